// Chat messages -> prompt text, byte for byte as the official DeepSeek-V4 encoder
// (encoding/encoding_dsv4.py, encode_messages) writes it: BOS, the max-effort preamble, system /
// developer / user / latest_reminder / assistant turns, tool schemas and response formats,
// DSML tool calls, tool results merged into user turns in call order, thinking blocks dropped
// from earlier turns, quick-instruction task tokens and turns without EOS. Messages are
// OpenAI-style JSON objects; nlohmann::ordered_json keeps their key order, which the schemas in
// the prompt must keep. Input the official encoder would reject or render as Python object
// syntax (wrong types, unknown roles, malformed tool calls) throws dsv4::Error naming the message.
// Token ids are the tokenizer's business, not this file's.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "chat/tokens.h"

namespace dsv4::chat {

// Which release's encoder: April (V4 preview, V4-Pro, the -DSpark variant) or V4-Flash-0731.
// They differ only in the reasoning-effort preamble put before the first message in thinking
// mode (../shared/chat/0731/reasoning-effort.md):
//   April: "high" (and none) add nothing, "max" adds its preamble; "low" is not an April level.
//   0731:  "low" (the default, and none) adds nothing, "high" adds April's max preamble (the
//          same bytes), "max" a new, stronger one.
enum class ChatFormat { april, v0731 };
ChatFormat parse_chat_format(std::string_view name);  // "april" or "0731"; else dsv4::Error
const char* chat_format_name(ChatFormat f);

enum class ReasoningEffort { none, low, high, max };

// "none", "low", "high" or "max"; anything else throws dsv4::Error.
ReasoningEffort parse_reasoning_effort(std::string_view name);

struct EncodeOptions {
  ThinkingMode thinking_mode = ThinkingMode::thinking;
  ReasoningEffort reasoning_effort = ReasoningEffort::none;
  ChatFormat format = ChatFormat::april;
  // In thinking mode, drop the reasoning of assistant turns (and developer turns) before the
  // last user turn. Ignored when any message carries tools: tool use needs the whole trail.
  bool drop_thinking = true;
  // Prepend BOS when nothing precedes the messages (no context).
  bool add_bos = true;
};

// messages: a JSON array of message objects. context: messages already encoded into an
// earlier prompt that these continue; they steer the rendering (tool-call order, thinking
// drop) but are not rendered themselves, and no BOS is written.
std::string encode_messages(const nlohmann::ordered_json& messages, const EncodeOptions& options,
                            const nlohmann::ordered_json& context = nlohmann::ordered_json::array());

// OpenAI requests carry `tools` beside the messages; the encoder wants them on a system
// message. They go onto the first message if it is a system message (which must not have
// tools of its own), else onto a new empty system message in front. Empty or null tools
// leave the messages as they are.
nlohmann::ordered_json attach_tools(nlohmann::ordered_json messages, const nlohmann::ordered_json& tools);

// The "## Tools" section for a list of OpenAI-format tools ({"type": "function", "function": ...}).
std::string render_tools(const nlohmann::ordered_json& tools);

}  // namespace dsv4::chat
