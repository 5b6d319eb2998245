// libFuzzer target: request bodies of the OpenAI and Anthropic endpoints. Each parses to a validated request
// or throws ApiError (a 4xx); any other exception would be a 500, and a crash takes the server
// down: both are findings.
#include <cstdint>
#include <string>

#include "server/anthropic_api.h"
#include "server/api_request.h"

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
  return 0;
}
