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
  auto parser = std::make_shared<chat::StreamParser>(tmode, /*whole_calls=*/true);
  auto stream = std::make_shared<MessageStream>(id, model, input_tokens, 0);
  auto started = std::make_shared<bool>(false);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", safe_provider(job, [=, this](size_t, httplib::DataSink& sink) {
        const auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
        if (!*started) {
          *started = true;
          if (!write(stream->start())) {
            job->cancel();
            return false;
          }
        }
        while (true) {
          auto ev = next_event(*job, sink);
          if (!ev) return false;
          if (ev->kind == JobEvent::delta) {
            if (!write(stream->delta(parser->feed(ev->text)))) {
              job->cancel();
              return false;
            }
            continue;
          }
          if (ev->kind == JobEvent::error) {
            write("event: error\ndata: " + dump(anthropic_error_body(ApiError(500, ev->text, "server_error"))) + "\n\n");
          } else {
            const GenerateResult& r = ev->result;
            log_result(r);
            if (r.hit_eos) write(stream->delta(parser->feed(chat::eos_token)));
            write(stream->delta(parser->finish()));
            log_unparsed(*parser);
            write(stream->finish(r, !parser->message().tool_calls.empty()));
          }
          sink.done();
          return true;
        }
      }),
      [job](bool) { job->cancel(); });
}

// POST /v1/messages/count_tokens: the prompt's length as /v1/messages would run it.
void OpenAIServer::Impl::count_tokens(const httplib::Request& req, httplib::Response& res) {
  const MessagesRequest c = parse_count_tokens_request(req.body, opt.default_reasoning);
  send_json(res, 200, {{"input_tokens", chat_prompt(c).size()}});
}

}  // namespace dsv4
