// dsv4 run: answers one prompt, or each prompt of a file, streaming (see tools/generation.h
// for the layout of reasoning and answer).
#include <fstream>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "tools/commands.h"
#include "tools/generation.h"

namespace dsv4::tools {

namespace {

nlohmann::ordered_json user_turn(const std::string& system, const std::string& text) {
  nlohmann::ordered_json m = nlohmann::ordered_json::array();
  if (!system.empty()) m.push_back({{"role", "system"}, {"content", system}});
  m.push_back({{"role", "user"}, {"content", text}});
  return m;
}

// Prompts separated by blank lines.
std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  DSV4_CHECK(in.good(), path, ": cannot open");
  std::vector<std::string> prompts;
  std::string line, cur;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (!cur.empty()) prompts.push_back(cur);
      cur.clear();
    } else {
      cur += (cur.empty() ? "" : "\n") + line;
    }
  }
  if (!cur.empty()) prompts.push_back(cur);
  DSV4_CHECK(!prompts.empty(), path, ": no prompts (prompts are separated by blank lines)");
  return prompts;
}

int run_once(const RunArgs& a) {
  DSV4_CHECK(a.prompt.empty() != a.input_file.empty(), "give exactly one of -p TEXT or -f FILE");
  const ReasoningMode mode = parse_reasoning_mode(a.reasoning);
  check_mode(mode, a.ctx);
  const std::vector<std::string> prompts = a.prompt.empty() ? read_prompts(a.input_file)
                                                            : std::vector<std::string>{a.prompt};
  const auto engine = load_engine(a);
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts.size() > 1) std::cout << "### prompt " << i + 1 << ": " << prompts[i] << "\n";
    Conversation conv(*engine);
    answer(conv, chat_prompt_tokens(*engine, user_turn(a.system, prompts[i]), nullptr, mode), mode, a);
  }
  return 0;
}

}  // namespace

void add_run(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "answer one prompt (or each prompt of a file), streaming");
  add_generation_options(run, *a);
  run->add_option("-p,--prompt", a->prompt, "the prompt");
  run->add_option("-f,--file,--input-file", a->input_file, "a file of prompts separated by blank lines");
  out.push_back({run, [a] { return run_once(*a); }});
}

}  // namespace dsv4::tools
