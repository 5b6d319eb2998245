#include "runtime/chat_prompt.h"

#include "core/check.h"

namespace dsv4 {

ReasoningMode parse_reasoning_mode(const std::string& s) {
  if (s == "none" || s == "chat" || s == "non-think" || s == "off") return ReasoningMode::non_think;
  if (s == "low") return ReasoningMode::think_low;
  if (s == "high" || s == "think" || s == "medium" || s == "on") return ReasoningMode::think_high;
  if (s == "max") return ReasoningMode::think_max;
  fail("reasoning mode '", s, "' is not one of none, low, high, max");
}

const char* reasoning_mode_name(ReasoningMode m) {
  switch (m) {
    case ReasoningMode::non_think: return "non-think";
    case ReasoningMode::think_low: return "think low";
    case ReasoningMode::think_high: return "think high";
    case ReasoningMode::think_max: return "think max";
  }
  return "?";
}

chat::ThinkingMode thinking_mode_of(ReasoningMode m) {
  return m == ReasoningMode::non_think ? chat::ThinkingMode::chat : chat::ThinkingMode::thinking;
}

std::string render_chat(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                        ReasoningMode mode, chat::ChatFormat format) {
  chat::EncodeOptions o;
  o.thinking_mode = thinking_mode_of(mode);
  o.format = format;
  switch (mode) {
    case ReasoningMode::non_think: o.reasoning_effort = chat::ReasoningEffort::none; break;
    // The April encoder has no "low": its "high" is the same prompt.
    case ReasoningMode::think_low:
      o.reasoning_effort = format == chat::ChatFormat::april ? chat::ReasoningEffort::high : chat::ReasoningEffort::low;
      break;
    case ReasoningMode::think_high: o.reasoning_effort = chat::ReasoningEffort::high; break;
    case ReasoningMode::think_max: o.reasoning_effort = chat::ReasoningEffort::max; break;
  }
  return chat::encode_messages(chat::attach_tools(messages, tools), o);
}

std::vector<int> chat_prompt_tokens(const Engine& e, const nlohmann::ordered_json& messages,
                                    const nlohmann::ordered_json& tools, ReasoningMode mode) {
  return e.tokenizer().encode(render_chat(messages, tools, mode, e.chat_format()));
}

}  // namespace dsv4
