// Anthropic's POST /v1/messages and /v1/messages/count_tokens over the chat pipeline
// (the translation is anthropic_api.h's).
#include "server/anthropic_api.h"
#include "server/ids.h"
#include "server/replies.h"
#include "server/server_impl.h"

namespace dsv4 {

// POST /v1/messages (Anthropic): the chat pipeline, answered as content blocks or as
// Anthropic's event stream (anthropic_api.h).
void OpenAIServer::Impl::messages(const httplib::Request& req, httplib::Response& res) {
  const MessagesRequest c = parse_messages_request(req.body, opt.default_reasoning, opt.test_hooks);
  const std::vector<int> prompt = chat_prompt(c);
  log_prompt(prompt);
  const int input_tokens = static_cast<int>(prompt.size());
  auto job = submit(make_request(c, prompt));
  const std::string id = random_id("msg_"), model = c.model.empty() ? engine.name() : c.model;
  const chat::ThinkingMode tmode = thinking_mode_of(c.mode);
  if (!c.stream) {
    const GenerateResult r = wait(*job, req);
    log_result(r);
    send_json(res, 200, message_response(id, model, parsed_answer(r, tmode), r));
    return;
  }
  auto stream = std::make_shared<MessageStream>(id, model, input_tokens, 0);
  stream_events(res, job, tmode,
                {[stream] { return stream->start(); },
                 [stream](const chat::StreamDelta& d) { return stream->delta(d); },
                 [stream](const GenerateResult& r, const chat::ParsedMessage& m) {
                   return stream->finish(r, !m.tool_calls.empty());
                 },
                 [](const std::string& error) {
                   return "event: error\ndata: " + dump(anthropic_error_body(ApiError(500, error, "server_error"))) + "\n\n";
                 }});
}

// POST /v1/messages/count_tokens: the prompt's length as /v1/messages would run it.
void OpenAIServer::Impl::count_tokens(const httplib::Request& req, httplib::Response& res) {
  const MessagesRequest c = parse_count_tokens_request(req.body, opt.default_reasoning);
  send_json(res, 200, {{"input_tokens", chat_prompt(c).size()}});
}

}  // namespace dsv4
