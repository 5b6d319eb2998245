// Completion text -> assistant message, as the official parse_message_from_completion_text
// (encoding/encoding_dsv4.py) reads it: reasoning up to "</think>" (thinking mode), content up
// to the end-of-sentence token or a DSML tool-call block, and each DSML invoke turned into an
// OpenAI tool call whose arguments are a JSON object text (string="true" values as JSON
// strings, string="false" values inserted as written). Text the official parser rejects throws
// dsv4::Error naming the problem. The streaming counterpart is stream.h; the DSML grammar
// helpers here are shared with it.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/tokens.h"

namespace dsv4::chat {

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object as text, e.g. {"location": "Beijing"}
  bool operator==(const ToolCall&) const = default;
};

struct ParsedMessage {
  std::string reasoning_content, content;
  std::vector<ToolCall> tool_calls;
  bool operator==(const ParsedMessage&) const = default;

  // {"role": "assistant", "content", "reasoning_content", "tool_calls": [{"type": "function",
  // "function": {"name", "arguments"}}]}, keys in the official order. No call ids: the official
  // parser assigns none; a server adds them.
  nlohmann::ordered_json to_json() const;
};

// The whole completion of one assistant turn, normally ending in the end-of-sentence token.
ParsedMessage parse_completion(std::string_view text, ThinkingMode mode);

// ---- DSML pieces, shared with the streaming parser ----

// The name in the text between "<｜DSML｜invoke" and the next tag, matched as the official
// regex ^\s*name="(.*?)">\n$ does (\s is Python's Unicode whitespace; $ also matches before a
// final newline). nullopt when it does not match.
std::optional<std::string> match_invoke_name(std::string_view text);

// The opening of a parameter after "<｜DSML｜parameter" is ' name="NAME" string="true|false">';
// the official regex ends the name at the first of the two markers.
inline constexpr std::string_view parameter_name_prefix = " name=\"";
inline constexpr std::string_view string_true_marker = "\" string=\"true\">";
inline constexpr std::string_view string_false_marker = "\" string=\"false\">";

// The arguments text for one parameter, as the official decode_dsml_to_arguments joins them:
// ", " between parameters, the key as a JSON string, ": ", then the value.
std::string argument_key_text(std::string_view name, bool first);

}  // namespace dsv4::chat
