// Generated tokens' log-probabilities (runtime/logprobs.h) in the shapes OpenAI's APIs answer:
// chat's {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} and legacy
// completions' {"tokens", "token_logprobs", "top_logprobs", "text_offset"}. A token is named
// by its text (a piece that is not whole UTF-8 with U+FFFD; "bytes" has it exactly), or
// "token_id:N" with vLLM's return_tokens_as_token_ids.
#pragma once

#include <nlohmann/json.hpp>
#include <span>

#include "runtime/logprobs.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

nlohmann::ordered_json chat_logprobs(const Tokenizer& t, std::span<const TokenLogprob> lps, bool token_ids);
// text_offset counts bytes of the generated text from `offset` (the text before these tokens).
nlohmann::ordered_json completion_logprobs(const Tokenizer& t, std::span<const TokenLogprob> lps, bool token_ids,
                                           size_t offset);

}  // namespace dsv4
