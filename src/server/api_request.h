// OpenAI request bodies -> validated, typed requests. Each known field is checked for type and
// range; a violation is an ApiError naming the field (HTTP 400, OpenAI's error shape). Unknown
// fields are ignored, as OpenAI-compatible servers do.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "grammar/json_schema.h"
#include "runtime/chat_prompt.h"
#include "runtime/logit_adjust.h"
#include "runtime/sampler.h"

namespace dsv4 {

// JSON as the server sends it: compact, invalid UTF-8 (from model output) replaced.
std::string dump(const nlohmann::ordered_json& j);

struct ApiError {
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "")
      : status(status), message(std::move(message)), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string message, type, param, code;
  nlohmann::ordered_json body() const;
};

// Throws the 400 invalid_request_error that names the request's field at fault.
[[noreturn]] void bad_request(const std::string& param, const std::string& message,
                              const std::string& code = "invalid_value");

inline constexpr int kMaxSamples = 16;

struct CommonRequest {
  std::string model;
  bool stream = false, include_usage = false;
  std::optional<int> max_tokens;
  SamplingParams sampling;
  LogitAdjust adjust;  // penalties and logit_bias
  // logprobs: -1 none, else the top alternatives per token (chat: top_logprobs with
  // logprobs true; completions: logprobs N). return_tokens_as_token_ids (vLLM's): tokens
  // named "token_id:N" instead of their text.
  int logprobs = -1;
  bool token_ids = false;
  int n = 1;  // samples of the prompt (seeds seed, seed + 1, ...), up to kMaxSamples, not streamed
  std::vector<std::string> stop;
  std::optional<std::string> forced_text;  // test hook
  // response_format json_object / json_schema (chat only): the answer's schema, and whether
  // reasoning comes before the answer.
  std::shared_ptr<const JsonSchema> format;
  bool answer_after_think = false;
};

struct ChatRequest : CommonRequest {
  nlohmann::ordered_json messages, tools;
  ReasoningMode mode = ReasoningMode::non_think;
};

struct CompletionRequest : CommonRequest {
  std::string prompt;
};

// The body as a JSON object (bounded nesting); anything else is an ApiError 400.
nlohmann::ordered_json parse_request_body(const std::string& body);

// Parse the body text; throws ApiError.
ChatRequest parse_chat_request(const std::string& body, ReasoningMode default_mode, bool test_hooks);
CompletionRequest parse_completion_request(const std::string& body, bool test_hooks);

}  // namespace dsv4
