// OpenAI's POST /v1/responses over the chat pipeline (the translation is responses_api.h's),
// and GET / DELETE /v1/responses/{id} on the stored ones (response_store.h).
#include <algorithm>

#include "chat/tokens.h"
#include "server/ids.h"
#include "server/replies.h"
#include "server/responses_api.h"
#include "server/server_impl.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

ApiError not_found(const std::string& id) {
  return ApiError(404, "Response with id '" + id + "' not found.", "invalid_request_error", "response_id", "not_found");
}

}  // namespace

// The reasoning's share of the output tokens, for usage: those before "</think>"; all of them
// when the answer is nothing but reasoning (cut before its end).
int OpenAIServer::Impl::reasoning_tokens(const GenerateResult& r, const chat::ParsedMessage& m) const {
  if (m.reasoning_content.empty()) return 0;
  const int end = engine.tokenizer().special_id(std::string(chat::think_end));
  const auto at = std::find(r.tokens.begin(), r.tokens.end(), end);
  if (at != r.tokens.end()) return static_cast<int>(at - r.tokens.begin());
  return m.content.empty() && m.tool_calls.empty() ? static_cast<int>(r.tokens.size()) : 0;
}

// A finished response, kept unless the request said store: false; its conversation is the one
// it continued, its input and its output.
void OpenAIServer::Impl::remember(const ResponsesRequest& c, const json& response) {
  if (!c.store) return;
  auto entry = std::make_shared<StoredResponse>();
  entry->response = response;
  entry->conversation = c.history;
  for (const json& item : c.input_items) entry->conversation.push_back(item);
  for (const json& item : response["output"]) entry->conversation.push_back(item);
  stored_responses.put(response["id"].get<std::string>(), std::move(entry));
}

void OpenAIServer::Impl::responses(const httplib::Request& req, httplib::Response& res) {
  const ResponsesRequest c = parse_responses_request(
      req.body, opt.default_reasoning, opt.test_hooks, [this](const std::string& id) -> std::optional<json> {
        if (auto e = stored_responses.get(id)) return e->conversation;
        return std::nullopt;
      });
  const std::vector<int> prompt = chat_prompt(c);
  log_prompt(prompt);
  auto job = submit(make_request(c, prompt));
  const ResponseHead head{random_id("resp_"), c.model.empty() ? engine.name() : c.model, now_s(), c.echo};
  const chat::ThinkingMode tmode = thinking_mode_of(c.mode);
  if (!c.stream) {
    const GenerateResult r = wait(*job, req);
    log_result(r);
    const chat::ParsedMessage m = parsed_answer(r, tmode);
    const json response = finished_response(head, output_items(m, r.finish == FinishReason::length), r, reasoning_tokens(r, m));
    remember(c, response);
    send_json(res, 200, response);
    return;
  }
  auto events = std::make_shared<ResponseEvents>(head);
  auto request = std::make_shared<const ResponsesRequest>(c);  // for remember(), at the end
  stream_events(res, job, tmode,
                {[events] { return events->start(); },
                 [events](const chat::StreamDelta& d) { return events->delta(d); },
                 [events, request, this](const GenerateResult& r, const chat::ParsedMessage& m) {
                   const std::string last = events->finish(r, reasoning_tokens(r, m));
                   // Stored before the client reads the end, so its next request finds it.
                   remember(*request, events->response());
                   return last;
                 },
                 [events](const std::string& error) { return events->fail(error); }});
}

// GET /v1/responses/{id}: a stored response as it was answered.
void OpenAIServer::Impl::get_response(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches[1];
  if (req.has_param("stream") && req.get_param_value("stream") == "true")
    throw ApiError(400, "streaming a stored response again is not supported", "invalid_request_error", "stream");
  auto e = stored_responses.get(id);
  if (!e) throw not_found(id);
  send_json(res, 200, e->response);
}

// DELETE /v1/responses/{id}: forgets it (a later previous_response_id naming it is a 404).
void OpenAIServer::Impl::delete_response(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches[1];
  if (!stored_responses.erase(id)) throw not_found(id);
  send_json(res, 200, {{"id", id}, {"object", "response"}, {"deleted", true}});
}

}  // namespace dsv4
