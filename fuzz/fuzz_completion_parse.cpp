// libFuzzer target: completion text through the one-shot parser and the streaming parser, the
// text cut into pieces at points taken from the input. Where the one-shot parser accepts the
// text, the streaming parser must give the same message and no error; its whole-calls mode (the
// server's) is checked against it.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/parse.h"
#include "chat/stream.h"
#include "core/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto mode = data[0] & 1 ? dsv4::chat::ThinkingMode::thinking : dsv4::chat::ThinkingMode::chat;
  const size_t step = 1 + data[1] % 16;
  const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  bool ok = true;
  dsv4::chat::ParsedMessage whole;
  try {
    whole = dsv4::chat::parse_completion(text, mode);
  } catch (const dsv4::Error&) {
    ok = false;
  }
  dsv4::chat::StreamParser stream(mode);
  for (size_t at = 0; at < text.size(); at += step) stream.feed(text.substr(at, step));
  stream.finish();
  if (ok && (!stream.error().empty() || !(stream.message() == whole))) __builtin_trap();
  // The server's mode (whole_calls): calls all or none, the same as the plain stream's when
  // there are any; on text the plain stream takes without error to its one end-of-sentence
  // token, with arguments that are JSON, the same message.
  dsv4::chat::StreamParser server(mode, /*whole_calls=*/true);
  for (size_t at = 0; at < text.size(); at += step) server.feed(text.substr(at, step));
  server.finish();
  if (!server.message().tool_calls.empty() && server.message().tool_calls != stream.message().tool_calls) __builtin_trap();
  const bool one_eos_at_end = text.find(dsv4::chat::eos_token) + dsv4::chat::eos_token.size() == text.size();
  bool json_arguments = true;
  for (const auto& call : stream.message().tool_calls) json_arguments &= nlohmann::json::accept(call.arguments);
  if (one_eos_at_end && json_arguments && stream.error().empty() && !stream.truncated() &&
      !(server.message() == stream.message()))
    __builtin_trap();
  return 0;
}
