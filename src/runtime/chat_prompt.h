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

// think_low is V4-Flash-0731's default thinking (no preamble); with the April encoder it renders
// as think_high (neither adds anything there).
enum class ReasoningMode { non_think, think_low, think_high, think_max };

// "none"/"chat"/"non-think" -> non_think, "low" -> think_low, "high"/"think"/"medium" ->
// think_high, "max" -> think_max. Throws Error otherwise.
ReasoningMode parse_reasoning_mode(const std::string& s);
const char* reasoning_mode_name(ReasoningMode m);
chat::ThinkingMode thinking_mode_of(ReasoningMode m);

// The smallest context the model card recommends for think max.
inline constexpr long long kThinkMaxMinContext = 384 * 1024;

std::string render_chat(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                        ReasoningMode mode, chat::ChatFormat format = chat::ChatFormat::april);
// The engine's chat format (Engine::chat_format).
std::vector<int> chat_prompt_tokens(const Engine& e, const nlohmann::ordered_json& messages,
                                    const nlohmann::ordered_json& tools, ReasoningMode mode);

}  // namespace dsv4
