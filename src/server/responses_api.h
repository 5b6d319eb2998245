// OpenAI's Responses API (POST /v1/responses) over the same chat pipeline as chat completions:
// a request's items are translated into the chat messages and tools the encoder takes, and the
// parsed answer back into output items (reasoning, message, function_call), or into the SSE
// event sequence the `openai` client assembles (response.created ... response.completed).
//
//   instructions                                -> a system message (never carried over)
//   previous_response_id                        -> that response's conversation, before input
//   input: a string                             -> a user message
//   message items (user, system, developer)     -> messages; input_text / output_text parts
//   reasoning, assistant message, function_call -> one assistant turn: reasoning_content,
//                                                  content, tool_calls
//   function_call_output                        -> a tool message
//   tools [{type: function, name, ...}]         -> function tools; tool_choice auto / none
//   reasoning {effort}                          -> the reasoning mode, as reasoning_effort
//   max_output_tokens, temperature, top_p       -> the chat request's
// Other item, part and tool types are refused by name. Kept free of httplib, so the request
// fuzz target links it; the store of responses is response_store.h, the routes
// responses_routes.cpp.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "chat/stream.h"
#include "runtime/engine.h"
#include "server/api_request.h"

namespace dsv4 {

struct ResponsesRequest : ChatRequest {
  nlohmann::ordered_json history = nlohmann::ordered_json::array();      // previous_response_id's items
  nlohmann::ordered_json input_items = nlohmann::ordered_json::array();  // this request's input as items
  bool store = true;
  // The request's settings as every Response object repeats them (instructions, tools, ...).
  nlohmann::ordered_json echo = nlohmann::ordered_json::object();
};

// The conversation of a stored response (its items), or nullopt when there is none by that id.
using ResponseHistory = std::function<std::optional<nlohmann::ordered_json>(const std::string& id)>;

// Throws ApiError: 400 naming the field, 404 for an unknown previous_response_id.
ResponsesRequest parse_responses_request(const std::string& body, ReasoningMode default_mode, bool test_hooks,
                                         const ResponseHistory& history);

// What every Response object of one request carries.
struct ResponseHead {
  std::string id, model;
  long long created_at = 0;
  nlohmann::ordered_json echo;  // ResponsesRequest::echo
};

// A Response object with the given status ("in_progress", "completed", ...) and output.
nlohmann::ordered_json response_object(const ResponseHead& h, const char* status, nlohmann::ordered_json output);
// The Response of a finished generation: completed, or incomplete when max_output_tokens cut
// it; usage with the prompt's cached tokens and the reasoning's tokens.
nlohmann::ordered_json finished_response(const ResponseHead& h, nlohmann::ordered_json output,
                                         const GenerateResult& r, int reasoning_tokens);
// The output items of a whole answer: reasoning, message, function calls, in the order the
// model writes them; a message (maybe empty) unless there are calls. With incomplete, the
// last message is marked so.
nlohmann::ordered_json output_items(const chat::ParsedMessage& m, bool incomplete);

// The SSE events of a streamed response, fed the parser's deltas as they come. Each event has
// its sequence_number; the items streamed are the ones the final Response lists.
class ResponseEvents {
 public:
  explicit ResponseEvents(ResponseHead head) : head_(std::move(head)) {}
  std::string start();                            // response.created, response.in_progress
  std::string delta(const chat::StreamDelta& d);  // output items, parts and their deltas
  // The open item closed, then response.completed or response.incomplete.
  std::string finish(const GenerateResult& r, int reasoning_tokens);
  // A generation that failed: an error event, then response.failed.
  std::string fail(const std::string& message);
  const nlohmann::ordered_json& response() const { return response_; }  // after finish()

 private:
  enum class Item { none, reasoning, message, call };
  std::string event(nlohmann::ordered_json data);
  std::string open(Item kind, nlohmann::ordered_json item);
  std::string close(bool incomplete);
  ResponseHead head_;
  int sequence_ = 0;
  nlohmann::ordered_json output_ = nlohmann::ordered_json::array();  // closed items
  nlohmann::ordered_json item_;  // the open one
  Item open_ = Item::none;
  std::string text_;  // the open item's text or arguments so far
  bool answered_ = false;  // a message or call was streamed
  nlohmann::ordered_json response_;
};

}  // namespace dsv4
