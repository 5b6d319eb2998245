// libFuzzer target: request bodies of the OpenAI (chat, completions, Responses) and Anthropic
// endpoints. Each parses to a validated request or throws ApiError (a 4xx); any other exception
// would be a 500, and a crash takes the server down: both are findings.
#include <cstdint>
#include <string>

#include "server/anthropic_api.h"
#include "server/api_request.h"
#include "server/responses_api.h"

namespace {

// previous_response_id: ids starting "resp_" continue a stored conversation of each item type
// the server stores (reasoning, message, function_call, function_call_output); others are
// unknown (404).
std::optional<nlohmann::ordered_json> history(const std::string& id) {
  if (!id.starts_with("resp_")) return std::nullopt;
  return nlohmann::ordered_json::parse(R"([
    {"type": "message", "role": "user", "content": "Weather?"},
    {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "t"}]},
    {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "18"}])");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    (void)dsv4::parse_chat_request(body, dsv4::ReasoningMode::non_think, true);
  } catch (const dsv4::ApiError& e) {
    if (e.status < 400 || e.status >= 500) __builtin_trap();
  }
  try {
    (void)dsv4::parse_completion_request(body, true);
  } catch (const dsv4::ApiError& e) {
    if (e.status < 400 || e.status >= 500) __builtin_trap();
  }
  try {
    (void)dsv4::parse_messages_request(body, dsv4::ReasoningMode::non_think, true);
  } catch (const dsv4::ApiError& e) {
    if (e.status < 400 || e.status >= 500) __builtin_trap();
  }
  try {
    (void)dsv4::parse_responses_request(body, dsv4::ReasoningMode::non_think, true, history);
  } catch (const dsv4::ApiError& e) {
    if (e.status < 400 || e.status >= 500) __builtin_trap();
  }
  return 0;
}
