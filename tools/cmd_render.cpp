// dsv4 render: chat messages on stdin -> the prompt text the model is fed, exactly as the
// official DeepSeek-V4 encoder writes it (src/chat/encode.h). Input is an OpenAI-style
// {"messages": [...], "tools": [...]} or a bare array of messages; the prompt goes to stdout
// with nothing added, so it can be piped into the tokenizer byte for byte.
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "chat/encode.h"
#include "core/check.h"
#include "core/json_input.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

using json = nlohmann::ordered_json;

struct RenderArgs {
  std::string thinking_mode, reasoning_effort = "none", chat_format = "april";
  bool keep_thinking = false;
};

int run(const RenderArgs& a) {
  DSV4_CHECK(!a.thinking_mode.empty(), "--thinking-mode chat|thinking is required");
  chat::EncodeOptions options;
  options.thinking_mode = chat::parse_thinking_mode(a.thinking_mode);
  options.reasoning_effort = chat::parse_reasoning_effort(a.reasoning_effort);
  options.drop_thinking = !a.keep_thinking;
  options.format = chat::parse_chat_format(a.chat_format);

  const std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  json request;
  try {
    request = parse_json<json>(input);
  } catch (const std::exception& e) {
    fail("stdin is not JSON: ", e.what());
  }
  json messages;
  if (request.is_array()) {
    messages = std::move(request);
  } else {
    DSV4_CHECK(request.is_object() && request.contains("messages"),
               "stdin must hold {\"messages\": [...], \"tools\": [...]} or an array of messages");
    for (const auto& [key, value] : request.items())
      DSV4_CHECK(key == "messages" || key == "tools", "unexpected key '", key,
                 "' in the request (render reads messages and tools)");
    messages = chat::attach_tools(request["messages"], request.value("tools", json()));
  }
  std::cout << chat::encode_messages(messages, options);
  return 0;
}

}  // namespace

void add_render(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<RenderArgs>();
  CLI::App* sub = app.add_subcommand("render", "chat messages (JSON on stdin) -> prompt text");
  sub->add_option("--thinking-mode", args->thinking_mode, "chat or thinking");
  sub->add_option("--reasoning-effort", args->reasoning_effort,
                  "none, low (0731), high or max: a preamble for max (april), for high and max (0731)");
  sub->add_option("--chat-format", args->chat_format, "april (the default) or 0731")
      ->check(CLI::IsMember({"april", "0731"}));
  sub->add_flag("--keep-thinking", args->keep_thinking, "keep the reasoning of turns before the last user turn");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
