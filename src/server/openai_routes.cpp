// OpenAI's POST /v1/chat/completions and /v1/completions. Streaming answers are SSE: one
// chat.completion.chunk (or text_completion) per delta, then [DONE].
#include <algorithm>
#include <utility>

#include "server/ids.h"
#include "server/logprobs_json.h"
#include "server/replies.h"
#include "server/server_impl.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

// Turns parser deltas into OpenAI chat deltas; keeps the call ids.
struct ChatDeltaWriter {
  std::vector<std::string> call_ids;
  json delta(const chat::StreamDelta& d) {
    json out = json::object();
    if (!d.reasoning_content.empty()) out["reasoning_content"] = d.reasoning_content;
    if (!d.content.empty()) out["content"] = d.content;
    if (!d.tool_calls.empty()) {
      json calls = json::array();
      for (const auto& t : d.tool_calls) {
        json c = {{"index", t.index}};
        if (t.begin) {
          call_ids.push_back(random_id("call_"));
          c["id"] = call_ids.back();
          c["type"] = "function";
          c["function"] = {{"name", t.name}, {"arguments", t.arguments}};
        } else {
          c["function"] = {{"arguments", t.arguments}};
        }
        calls.push_back(c);
      }
      out["tool_calls"] = calls;
    }
    return out;
  }
};

}  // namespace

void OpenAIServer::Impl::chat_completions(const httplib::Request& req, httplib::Response& res) {
  const ChatRequest c = parse_chat_request(req.body, opt.default_reasoning, opt.test_hooks);
  if (c.mode == ReasoningMode::think_max && opt.ctx < kThinkMaxMinContext)
    std::cerr << ("warning: think max requested with --ctx " + std::to_string(opt.ctx) +
                  " (the model card recommends >= " + std::to_string(kThinkMaxMinContext) + ")\n")
              << std::flush;
  const std::vector<int> prompt = chat_prompt(c);
  log_prompt(prompt);
  const std::string id = random_id("chatcmpl-"), model = c.model.empty() ? engine.name() : c.model;
  const long long created = now_s();
  const chat::ThinkingMode tmode = thinking_mode_of(c.mode);

  if (!c.stream) {
    const std::vector<GenerateResult> results = wait_all(submit_samples(c, prompt), req);
    json choices = json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      const GenerateResult& r = results[i];
      const chat::ParsedMessage m = parsed_answer(r, tmode);
      json msg = {{"role", "assistant"}};
      msg["content"] = m.content.empty() && !m.tool_calls.empty() ? json(nullptr) : json(m.content);
      if (tmode == chat::ThinkingMode::thinking) msg["reasoning_content"] = m.reasoning_content;
      if (!m.tool_calls.empty()) {
        json calls = json::array();
        for (const auto& t : m.tool_calls)
          calls.push_back({{"id", random_id("call_")}, {"type", "function"},
                           {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
        msg["tool_calls"] = calls;
      }
      choices.push_back({{"index", i}, {"message", msg},
                         {"logprobs", c.logprobs >= 0 ? chat_logprobs(engine.tokenizer(), r.logprobs, c.token_ids) : json(nullptr)},
                         {"finish_reason", finish_name(r, !m.tool_calls.empty())}});
    }
    send_json(res, 200,
              {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model},
               {"choices", choices}, {"usage", usage_json(results)}});
    return;
  }
  // Streamed: the samples one after the other, each chunk naming its choice's index (the
  // siblings run meanwhile; their events wait in their jobs).
  const std::vector<std::shared_ptr<Job>> jobs =
      c.n > 1 ? submit_samples(c, prompt) : std::vector<std::shared_ptr<Job>>{submit(make_request(c, prompt))};
  struct Choice {
    chat::StreamParser parser;
    ChatDeltaWriter writer;
    std::vector<TokenLogprob> logprobs;  // go out with the first chunk after them
    size_t logprobs_received = 0;
    bool started = false;
  };
  struct Stream {
    std::vector<Choice> choices;
    std::vector<GenerateResult> results;
    size_t current = 0;
  };
  auto st = std::make_shared<Stream>();
  for (size_t i = 0; i < jobs.size(); ++i) st->choices.push_back(Choice{chat::StreamParser(tmode, /*whole_calls=*/true), {}, {}, 0, false});
  const bool include_usage = c.include_usage;
  const bool want_logprobs = c.logprobs >= 0, token_ids = c.token_ids;
  const Tokenizer* tokenizer = &engine.tokenizer();  // outlives the stream (the server)
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", safe_provider(jobs, [=, this](size_t, httplib::DataSink& sink) {
        auto chunk = [&](size_t index, const json& delta, const json& finish) {
          Choice& ch = st->choices[index];
          json lp = nullptr;
          if (want_logprobs && !ch.logprobs.empty()) lp = chat_logprobs(*tokenizer, std::exchange(ch.logprobs, {}), token_ids);
          const json j = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
                          {"choices", json::array({{{"index", index}, {"delta", delta}, {"logprobs", lp},
                                                    {"finish_reason", finish}}})}};
          const std::string s = "data: " + dump(j) + "\n\n";
          return sink.write(s.data(), s.size());
        };
        auto close = [&](bool ok) {
          if (ok) {
            const std::string s = "data: [DONE]\n\n";
            sink.write(s.data(), s.size());
          }
          sink.done();
          return ok;
        };
        auto cancel_all = [&] {
          for (const auto& j : jobs) j->cancel();
          return false;
        };
        while (st->current < jobs.size()) {
          const size_t i = st->current;
          Choice& ch = st->choices[i];
          if (!ch.started) {
            ch.started = true;
            if (!chunk(i, {{"role", "assistant"}, {"content", ""}}, nullptr)) return cancel_all();
          }
          auto ev = next_event(*jobs[i], sink);
          if (!ev) return cancel_all();
          if (ev->kind == JobEvent::error) {
            const std::string s = "data: " + dump(ApiError(500, ev->text, "server_error").body()) + "\n\n";
            sink.write(s.data(), s.size());
            cancel_all();
            return close(true);
          }
          if (ev->kind == JobEvent::delta) {
            ch.logprobs.insert(ch.logprobs.end(), ev->logprobs.begin(), ev->logprobs.end());
            ch.logprobs_received += ev->logprobs.size();
            const chat::StreamDelta d = ch.parser.feed(ev->text);
            if (!d.empty() && !chunk(i, ch.writer.delta(d), nullptr)) return cancel_all();
            continue;
          }
          const GenerateResult& r = ev->result;
          if (i == 0) log_result(r);
          else log_sample(r);
          chat::StreamDelta d = r.hit_eos ? ch.parser.feed(chat::eos_token) : chat::StreamDelta{};
          const chat::StreamDelta tail = ch.parser.finish();
          log_unparsed(ch.parser);
          d.reasoning_content += tail.reasoning_content;
          d.content += tail.content;
          d.tool_calls.insert(d.tool_calls.end(), tail.tool_calls.begin(), tail.tool_calls.end());
          ch.logprobs.insert(ch.logprobs.end(), r.logprobs.begin() + std::min(ch.logprobs_received, r.logprobs.size()),
                             r.logprobs.end());
          if (!d.empty() || !ch.logprobs.empty()) chunk(i, ch.writer.delta(d), nullptr);
          if (!chunk(i, json::object(), finish_name(r, !ch.parser.message().tool_calls.empty()))) return cancel_all();
          st->results.push_back(r);
          ++st->current;
        }
        if (include_usage) {
          const json j = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
                          {"choices", json::array()}, {"usage", usage_json(st->results)}};
          const std::string s = "data: " + dump(j) + "\n\n";
          sink.write(s.data(), s.size());
        }
        return close(true);
      }),
      [jobs](bool) {  // released: cancel what still runs (a no-op for finished jobs)
        for (const auto& j : jobs) j->cancel();
      });
}

void OpenAIServer::Impl::completions(const httplib::Request& req, httplib::Response& res) {
  const CompletionRequest c = parse_completion_request(req.body, opt.test_hooks);
  std::vector<int> prompt;
  try {
    prompt = engine.tokenizer().encode(c.prompt);
  } catch (const Error& e) {
    throw ApiError(400, std::string("prompt: ") + e.what(), "invalid_request_error", "prompt");
  }
  if (engine.bos_id() >= 0 && (prompt.empty() || prompt[0] != engine.bos_id())) prompt.insert(prompt.begin(), engine.bos_id());
  CommonRequest common = c;
  if (!common.max_tokens) common.max_tokens = 16;  // OpenAI's default for completions
  log_prompt(prompt);
  const std::string id = random_id("cmpl-"), model = c.model.empty() ? engine.name() : c.model;
  const long long created = now_s();
  auto body = [id, model, created](const std::string& text, const json& finish) {
    return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
                {"choices", json::array({{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}}})}};
  };
  const bool want_logprobs = c.logprobs >= 0, token_ids = c.token_ids;
  const Tokenizer* tokenizer = &engine.tokenizer();  // outlives the stream (the server)
  if (!c.stream) {
    const std::vector<GenerateResult> results = wait_all(submit_samples(common, prompt), req);
    json choices = json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      const GenerateResult& r = results[i];
      json choice = body(r.text, finish_name(r, false))["choices"][0];
      choice["index"] = i;
      if (want_logprobs) choice["logprobs"] = completion_logprobs(*tokenizer, r.logprobs, token_ids, 0);
      choices.push_back(choice);
    }
    json j = body("", nullptr);
    j["choices"] = choices;
    j["usage"] = usage_json(results);
    send_json(res, 200, j);
    return;
  }
  auto job = submit(make_request(common, prompt));
  const bool include_usage = c.include_usage;
  // Tokens' logprobs sent so far, and the bytes of those tokens (for text_offset).
  auto sent = std::make_shared<std::pair<size_t, size_t>>(0, 0);
  auto with_logprobs = [=](json j, std::span<const TokenLogprob> lps) {
    if (!want_logprobs) return j;
    j["choices"][0]["logprobs"] = completion_logprobs(*tokenizer, lps, token_ids, sent->second);
    sent->first += lps.size();
    for (const TokenLogprob& lp : lps) sent->second += tokenizer->token_bytes(lp.token).size();
    return j;
  };
  res.set_chunked_content_provider(
      "text/event-stream",
      safe_provider(job, [=, this](size_t, httplib::DataSink& sink) {
        auto send = [&](const json& j) {
          const std::string s = "data: " + dump(j) + "\n\n";
          return sink.write(s.data(), s.size());
        };
        while (true) {
          auto ev = next_event(*job, sink);
          if (!ev) return false;
          if (ev->kind == JobEvent::delta) {
            if (!send(with_logprobs(body(ev->text, nullptr), ev->logprobs))) {
              job->cancel();
              return false;
            }
            continue;
          }
          if (ev->kind == JobEvent::error) send(ApiError(500, ev->text, "server_error").body());
          else {
            log_result(ev->result);
            const std::vector<TokenLogprob>& all = ev->result.logprobs;
            json j = with_logprobs(body("", finish_name(ev->result, false)),
                                   std::span<const TokenLogprob>(all).subspan(std::min(sent->first, all.size())));
            if (include_usage) j["usage"] = usage_json(ev->result);
            send(j);
          }
          const std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
          return true;
        }
      }),
      [job](bool) { job->cancel(); });
}

}  // namespace dsv4
