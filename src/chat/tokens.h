// The special strings of the DeepSeek-V4 chat format and the two thinking modes, shared by the
// encoder (messages -> prompt) and the parsers (completion -> message). Only the strings live
// here; turning them into token ids is the tokenizer's job.
#pragma once

#include <string_view>

namespace dsv4::chat {

inline constexpr std::string_view bos_token = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view eos_token = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view think_start = "<think>";
inline constexpr std::string_view think_end = "</think>";
inline constexpr std::string_view dsml_token = "｜DSML｜";
inline constexpr std::string_view user_token = "<｜User｜>";
inline constexpr std::string_view assistant_token = "<｜Assistant｜>";
inline constexpr std::string_view latest_reminder_token = "<｜latest_reminder｜>";

// The DSML tags a tool-call block is made of. A block opens with "\n\n" + tool_calls_open.
inline constexpr std::string_view tool_calls_open = "<｜DSML｜tool_calls";
inline constexpr std::string_view tool_calls_start = "\n\n<｜DSML｜tool_calls";
inline constexpr std::string_view tool_calls_close = "</｜DSML｜tool_calls>";
inline constexpr std::string_view invoke_open = "<｜DSML｜invoke";
inline constexpr std::string_view invoke_close = "</｜DSML｜invoke";
inline constexpr std::string_view parameter_open = "<｜DSML｜parameter";
// The official parser ends a parameter value at "/｜DSML｜parameter" and then requires the
// value to end in "<", so the "<" of the closing tag is matched separately.
inline constexpr std::string_view parameter_close = "/｜DSML｜parameter";

// chat: the prompt closes the thinking block ("</think>") and the model answers directly.
// thinking: the prompt opens it ("<think>") and the model reasons first.
enum class ThinkingMode { chat, thinking };

// "chat" or "thinking"; anything else throws dsv4::Error.
ThinkingMode parse_thinking_mode(std::string_view name);

}  // namespace dsv4::chat
