// OpenAI-style chat requests -> prompt token ids, shared by `dsv4 run / chat` and the server:
// tools attached to the messages, the DeepSeek-V4 encoder, then the model's tokenizer. The
// three reasoning modes of the release: non-think (chat mode), think high (thinking mode) and
// think max (thinking mode with the max preamble, meant for contexts of 384K tokens or more).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/encode.h"
#include "runtime/engine.h"

namespace dsv4 {

enum class ReasoningMode { non_think, think_high, think_max };

// "none"/"chat"/"non-think" -> non_think, "high"/"think" -> think_high, "max" -> think_max
// (also OpenAI's "low" / "medium", which map to think_high). Throws Error otherwise.
ReasoningMode parse_reasoning_mode(const std::string& s);
const char* reasoning_mode_name(ReasoningMode m);
chat::ThinkingMode thinking_mode_of(ReasoningMode m);

// The smallest context the model card recommends for think max.
inline constexpr long long kThinkMaxMinContext = 384 * 1024;

std::string render_chat(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                        ReasoningMode mode);
std::vector<int> chat_prompt_tokens(const Engine& e, const nlohmann::ordered_json& messages,
                                    const nlohmann::ordered_json& tools, ReasoningMode mode);

}  // namespace dsv4
