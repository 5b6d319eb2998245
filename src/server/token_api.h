// POST /tokenize and /detokenize, in the shapes llama-server and vLLM answer, so either's
// clients work: {"content": text} (llama.cpp, no BOS unless "add_special") or {"prompt": text}
// (vLLM, BOS unless "add_special_tokens": false) or a chat request's {"messages", "tools",
// reasoning fields} (the prompt the chat endpoint would run) -> {"tokens", "count",
// "max_model_len"}; "with_pieces" gives each token as {"id", "piece"}. {"tokens": [ids]} ->
// {"content", "prompt"} (the same text under each project's name). Bad input is an ApiError.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "runtime/chat_prompt.h"
#include "runtime/engine.h"

namespace dsv4 {

nlohmann::ordered_json tokenize_response(const Engine& e, const std::string& body, ReasoningMode default_mode,
                                         long long max_model_len);
nlohmann::ordered_json detokenize_response(const Engine& e, const std::string& body);

}  // namespace dsv4
