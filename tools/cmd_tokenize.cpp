// dsv4 tokenize: JSON lines in, JSON lines out. Encoding reads one JSON string per line and
// writes a JSON array of ids (no BOS); --decode reads arrays of ids and writes JSON strings.
// A bad line is an error naming its line number.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/json_input.h"
#include "tokenizer/tokenizer.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

struct TokenizeArgs {
  std::string tokenizer;
  bool decode = false;
};

int run(const TokenizeArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  std::string line;
  for (long long n = 1; std::getline(std::cin, line); ++n) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = parse_json(line);
    } catch (const std::exception& e) {
      fail("stdin line ", n, ": not valid JSON: ", e.what());
    }
    try {
      if (a.decode) {
        DSV4_CHECK(j.is_array(), "expected a JSON array of ids");
        std::vector<int> ids;
        for (const auto& v : j) {
          DSV4_CHECK(v.is_number_integer(), "ids must be integers, got ", v.dump());
          ids.push_back(v.get<int>());
        }
        // Invalid UTF-8 (ids that end inside a character) is replaced, never printed raw.
        std::cout << nlohmann::json(tok.decode(ids)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      } else {
        DSV4_CHECK(j.is_string(), "expected a JSON string");
        std::cout << nlohmann::json(tok.encode(j.get<std::string>())).dump() << "\n";
      }
    } catch (const Error& e) {
      fail("stdin line ", n, ": ", e.what());
    }
  }
  return 0;
}

}  // namespace

void add_tokenize(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* sub = app.add_subcommand("tokenize", "text <-> token ids, JSON lines on stdin / stdout");
  sub->add_option("-t,--tokenizer", args->tokenizer, "tokenizer.json")->required();
  sub->add_flag("--decode", args->decode, "ids -> text instead of text -> ids");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
