// Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) over the same chat
// pipeline as OpenAI's: a request is translated into the chat messages and tools the encoder
// takes, and the parsed answer back into content blocks (thinking, text, tool_use), or into
// the SSE event sequence Anthropic's clients read (message_start, content_block_start /
// delta / stop, message_delta, message_stop).
//
//   system (string or text blocks)            -> a system message
//   user: text blocks, tool_result blocks     -> tool messages (the results), then a user message
//   assistant: thinking, text, tool_use       -> reasoning_content, content, tool_calls
//   tools {name, description, input_schema}   -> function tools; tool_choice auto / none
//   thinking {type: enabled, budget_tokens}   -> think high, or think max from 65536 tokens
//   stop_sequences                            -> stop strings
// Other block types (image, document, ...) are refused by name.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "chat/stream.h"
#include "runtime/engine.h"
#include "server/api_request.h"

namespace dsv4 {

// Budgets from this size think at the max effort.
inline constexpr long long kThinkMaxBudget = 65536;

struct MessagesRequest : ChatRequest {};

MessagesRequest parse_messages_request(const std::string& body, ReasoningMode default_mode, bool test_hooks);
// count_tokens takes the same body without max_tokens.
MessagesRequest parse_count_tokens_request(const std::string& body, ReasoningMode default_mode);

// An ApiError in Anthropic's shape: {"type": "error", "error": {"type", "message"}}.
nlohmann::ordered_json anthropic_error_body(const ApiError& e);

// "end_turn", "max_tokens", "stop_sequence" or "tool_use".
const char* stop_reason(const GenerateResult& r, bool tool_use);

nlohmann::ordered_json message_response(const std::string& id, const std::string& model,
                                        const chat::ParsedMessage& m, const GenerateResult& r);

// The SSE events of a streamed message, fed the parser's deltas as they come.
class MessageStream {
 public:
  MessageStream(std::string id, std::string model, int input_tokens, int cached_tokens);
  std::string start() const;                       // message_start
  std::string delta(const chat::StreamDelta& d);   // content_block_* events
  std::string finish(const GenerateResult& r, bool tool_use);  // the last stop, message_delta, message_stop

 private:
  enum class Block { none, thinking, text, tool_use };
  std::string open(Block b, const nlohmann::ordered_json& content_block);
  std::string close();
  std::string id_, model_;
  int input_tokens_, cached_tokens_;
  Block block_ = Block::none;
  int index_ = -1;  // of the open block (or the last one)
};

}  // namespace dsv4
