// dsv4 parse: completion text on stdin -> the assistant message as JSON {role, content,
// reasoning_content, tool_calls}, as the official parser reads it (src/chat/parse.h).
// Malformed text exits 1 with a message naming what is wrong.
#include <iostream>
#include <iterator>
#include <memory>

#include "chat/parse.h"
#include "core/check.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

struct ParseArgs {
  std::string thinking_mode;
};

int run(const ParseArgs& a) {
  DSV4_CHECK(!a.thinking_mode.empty(), "--thinking-mode chat|thinking is required");
  const chat::ThinkingMode mode = chat::parse_thinking_mode(a.thinking_mode);
  const std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  // Model output may hold invalid UTF-8; it is replaced in the JSON rather than refused.
  std::cout << chat::parse_completion(text, mode).to_json().dump(2, ' ', false,
                                                                   nlohmann::json::error_handler_t::replace)
            << "\n";
  return 0;
}

}  // namespace

void add_parse(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<ParseArgs>();
  CLI::App* sub = app.add_subcommand("parse", "completion text (stdin) -> assistant message JSON");
  sub->add_option("--thinking-mode", args->thinking_mode, "chat or thinking (the mode the prompt was rendered in)");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
