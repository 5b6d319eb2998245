// dsv4 make-chat-data: synthetic conversations for the supervised stage (see train/chat_data.h)
// as JSON lines {"mode", "prompt", "completion"}.
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/write_file.h"
#include "tools/commands.h"
#include "train/chat_data.h"

namespace dsv4::tools {

namespace {

struct MakeChatDataArgs {
  std::string out;
  int count = 2000;
  uint64_t seed = 1;
};

int run(const MakeChatDataArgs& a) {
  DSV4_CHECK(a.count >= 1, "--count must be >= 1");
  std::ofstream out(a.out, std::ios::binary);
  DSV4_CHECK(out, a.out, ": cannot open for writing");
  for (const ChatExample& e : make_chat_examples(a.count, a.seed))
    out << nlohmann::ordered_json{{"mode", e.mode}, {"prompt", e.prompt}, {"completion", e.completion}}.dump() << "\n";
  close_checked(out, a.out);
  std::cerr << "wrote " << a.count << " conversations to " << a.out << "\n";
  return 0;
}

}  // namespace

void add_make_chat_data(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<MakeChatDataArgs>();
  CLI::App* sub = app.add_subcommand("make-chat-data", "synthetic V4-format conversations for supervised training");
  sub->add_option("-o,--out", a->out, "JSON lines to write")->required();
  sub->add_option("--count", a->count, "conversations");
  sub->add_option("--seed", a->seed, "random seed");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
