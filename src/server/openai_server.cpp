// HTTP handlers (cpp-httplib) over the Scheduler. Streaming responses are SSE: one
// chat.completion.chunk (or text_completion) per delta, then [DONE].
#include "server/openai_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>

#include "chat/stream.h"
#include "core/check.h"
#include "core/json_input.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "runtime/scheduler.h"
#include "runtime/snapshot_file.h"
#include "server/access.h"
#include "server/anthropic_api.h"
#include "server/access_log.h"
#include "server/api_request.h"
#include "server/connection_pool.h"
#include "server/connections.h"
#include "server/ids.h"
#include "server/logprobs_json.h"
#include "server/metrics.h"
#include "server/request_watchdog.h"
#include "server/token_api.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;
using namespace std::chrono_literals;

long long now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

// Errors in the shape of the API the path belongs to: Anthropic's for /v1/messages, OpenAI's
// for everything else.
void send_error(const httplib::Request& req, httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, req.path.starts_with("/v1/messages") ? anthropic_error_body(e) : e.body());
}

json usage_json(const GenerateResult& r) {
  const int completion = static_cast<int>(r.tokens.size()) + (r.hit_eos ? 1 : 0);
  return {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", completion},
          {"total_tokens", r.prompt_tokens + completion},
          {"prompt_tokens_details", {{"cached_tokens", r.reused_tokens}}}};
}

const char* finish_name(const GenerateResult& r, bool tool_calls) {
  if (tool_calls && r.finish == FinishReason::stop) return "tool_calls";
  return r.finish == FinishReason::length ? "length" : "stop";
}

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

// A streaming provider must never throw (it runs on an HTTP worker thread): any exception
// cancels the job and ends the response.
httplib::ContentProviderWithoutLength safe_provider(std::shared_ptr<Job> job,
                                                    httplib::ContentProviderWithoutLength provider) {
  return [job, provider](size_t offset, httplib::DataSink& sink) {
    try {
      return provider(offset, sink);
    } catch (const std::exception& e) {
      std::cerr << "dsv4 serve: stream aborted: " << e.what() << "\n";
      job->cancel();
      return false;
    }
  };
}

}  // namespace

struct OpenAIServer::Impl {
  const Engine& engine;
  ServerOptions opt;
  Scheduler scheduler;
  httplib::Server http;
  std::atomic<int> port{-1};  // once bound
  int listen_fd = -1;         // the listening socket, once created
  std::unique_ptr<RequestWatchdog> watchdog;  // while run() serves

  uint64_t fingerprint = 0;  // of saved slots (snapshot_fingerprint), with --slot-save-path
  ApiKeys keys;
  CorsPolicy cors;
  ServerMetrics metrics;

  Impl(const Engine& e, ServerOptions o)
      : engine(e), opt(std::move(o)), scheduler(e, opt.parallel, opt.max_queue, opt.batch_tokens),
        keys(opt.api_keys), cors{opt.allowed_origins} {
    if (!opt.slot_save_path.empty()) fingerprint = e.snapshot_fingerprint();
  }

  // The access log's figures of a generation (access_log.h): the prompt when it is known...
  void log_prompt(const std::vector<int>& prompt) const {
    RequestRecord& r = access_log::current();
    r.prompt_tokens = static_cast<int>(prompt.size());
    if (opt.log_prompts) r.prompt_text = engine.tokenizer().decode(prompt);
  }
  // ... and what came of it (also counted in /metrics).
  void log_result(const GenerateResult& g) {
    RequestRecord& r = access_log::current();
    r.cached_tokens = g.reused_tokens;
    r.completion_tokens = static_cast<int>(g.tokens.size()) + (g.hit_eos ? 1 : 0);
    metrics.generated(g.prompt_tokens, r.cached_tokens, r.completion_tokens);
  }

  // The route a path took, as /metrics labels it: a fixed set, whatever clients send.
  static std::string route_of(const std::string& path) {
    for (const char* r : {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/messages",
                          "/v1/messages/count_tokens", "/tokenize", "/detokenize"})
      if (path == r) return r;
    if (path.starts_with("/slots/")) return "/slots/{id}";
    return "other";
  }

  // Model output that is not the chat format it should be (a broken tool call) is answered as
  // text (chat::StreamParser's whole_calls) and noted here.
  static void log_unparsed(const chat::StreamParser& p) {
    if (!p.error().empty()) std::cerr << "dsv4 serve: model output answered as text: " << p.error() << "\n";
  }

  // The prompt of a chat request; what the encoder refuses is a 400 naming it.
  std::vector<int> chat_prompt(const ChatRequest& c) const {
    try {
      return chat_prompt_tokens(engine, c.messages, c.tools, c.mode);
    } catch (const Error& e) {
      throw ApiError(400, std::string("messages: ") + e.what(), "invalid_request_error", "messages");
    }
  }

  GenerateRequest make_request(const CommonRequest& c, std::vector<int> prompt) {
    const int max_tokens = c.max_tokens.value_or(opt.default_max_tokens);
    if (static_cast<long long>(prompt.size()) + max_tokens > opt.ctx)
      throw ApiError(400, "this model's context is " + std::to_string(opt.ctx) + " tokens; the prompt has " +
                              std::to_string(prompt.size()) + " and max_tokens is " + std::to_string(max_tokens),
                     "invalid_request_error", "messages", "context_length_exceeded");
    GenerateRequest g;
    g.prompt = std::move(prompt);
    g.sampling = c.sampling;
    g.max_tokens = max_tokens;
    g.stop = c.stop;
    g.forced_text = c.forced_text;
    g.adjust = c.adjust;
    g.logprobs = c.logprobs;
    for (const auto& [t, b] : g.adjust.bias)
      if (t >= engine.tokenizer().vocab_size())
        throw ApiError(400, "logit_bias: token " + std::to_string(t) + " is outside the vocabulary (" +
                                std::to_string(engine.tokenizer().vocab_size()) + " tokens)",
                       "invalid_request_error", "logit_bias");
    g.spec = opt.spec;
    g.draft = opt.draft;
    return g;
  }

  std::shared_ptr<Job> submit(GenerateRequest g) {
    try {
      return scheduler.submit(std::move(g));
    } catch (const Busy& b) {
      throw ApiError(503, b.what(), "server_error", "", "server_busy");
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
  }

  // Waits for the end of a job, collecting its text; a job error becomes a 500. A client that
  // goes away meanwhile cancels the job, which frees its slot at the next step; a job cancelled
  // by shutdown becomes a 503.
  GenerateResult wait(Job& job, const httplib::Request& req) {
    const int fd = find_connection(port, req.remote_addr, req.remote_port);
    auto checked = std::chrono::steady_clock::now();
    bool client_gone = false;
    while (true) {
      auto ev = job.next(100ms);
      // Deltas arrive at every token, so the client is checked by the clock, not between events.
      if (fd >= 0 && std::chrono::steady_clock::now() - checked >= 100ms) {
        checked = std::chrono::steady_clock::now();
        if (!job.cancelled() && peer_gone(fd)) {
          client_gone = true;
          job.cancel();
        }
      }
      if (!ev || ev->kind == JobEvent::delta) continue;
      if (ev->kind == JobEvent::error) throw ApiError(500, ev->text, "server_error");
      if (ev->result.finish == FinishReason::cancelled)
        throw ApiError(503, client_gone ? "the client went away" : "the server is shutting down", "server_error", "",
                       "server_busy");
      return ev->result;
    }
  }

  void chat_completions(const httplib::Request& req, httplib::Response& res) {
    const ChatRequest c = parse_chat_request(req.body, opt.default_reasoning, opt.test_hooks);
    if (c.mode == ReasoningMode::think_max && opt.ctx < kThinkMaxMinContext)
      std::cerr << "warning: think max requested with --ctx " << opt.ctx << " (the model card recommends >= "
                << kThinkMaxMinContext << ")\n";
    std::vector<int> prompt = chat_prompt(c);
    log_prompt(prompt);
    auto job = submit(make_request(c, std::move(prompt)));
    const std::string id = random_id("chatcmpl-"), model = c.model.empty() ? engine.name() : c.model;
    const long long created = now_s();
    const chat::ThinkingMode tmode = thinking_mode_of(c.mode);

    if (!c.stream) {
      const GenerateResult r = wait(*job, req);
      log_result(r);
      chat::StreamParser parser(tmode, /*whole_calls=*/true);
      parser.feed(r.text);
      if (r.hit_eos) parser.feed(chat::eos_token);
      parser.finish();
      log_unparsed(parser);
      const chat::ParsedMessage& m = parser.message();
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
      send_json(res, 200,
                {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model},
                 {"choices", json::array({{{"index", 0}, {"message", msg},
                                           {"logprobs", c.logprobs >= 0 ? chat_logprobs(engine.tokenizer(), r.logprobs, c.token_ids) : json(nullptr)},
                                           {"finish_reason", finish_name(r, !m.tool_calls.empty())}}})},
                 {"usage", usage_json(r)}});
      return;
    }

    auto parser = std::make_shared<chat::StreamParser>(tmode, /*whole_calls=*/true);
    auto writer = std::make_shared<ChatDeltaWriter>();
    auto state = std::make_shared<int>(0);  // 0: role not sent, 1: streaming, 2: finished
    const bool include_usage = c.include_usage;
    // Logprobs go out with the first chunk after them (a token's text may be held back).
    const bool want_logprobs = c.logprobs >= 0, token_ids = c.token_ids;
    auto logprobs = std::make_shared<std::vector<TokenLogprob>>();
    auto logprobs_received = std::make_shared<size_t>(0);
    const Tokenizer* tokenizer = &engine.tokenizer();  // outlives the stream (the server)
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", safe_provider(job, [=, this](size_t, httplib::DataSink& sink) {
          auto chunk = [&](const json& delta, const json& finish, const json* usage) {
            json lp = nullptr;
            if (want_logprobs && !logprobs->empty()) lp = chat_logprobs(*tokenizer, std::exchange(*logprobs, {}), token_ids);
            json j = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
                      {"choices", json::array({{{"index", 0}, {"delta", delta}, {"logprobs", lp},
                                                {"finish_reason", finish}}})}};
            if (usage) j["usage"] = *usage;
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
          if (*state == 0) {
            *state = 1;
            if (!chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr)) {
              job->cancel();
              return false;
            }
          }
          while (true) {
            auto ev = job->next(200ms);
            if (!ev) {
              if (!sink.is_writable()) {  // the client went away
                job->cancel();
                return false;
              }
              continue;
            }
            if (ev->kind == JobEvent::error) {
              const std::string s = "data: " + dump(ApiError(500, ev->text, "server_error").body()) + "\n\n";
              sink.write(s.data(), s.size());
              return close(true);
            }
            if (ev->kind == JobEvent::delta) {
              logprobs->insert(logprobs->end(), ev->logprobs.begin(), ev->logprobs.end());
              *logprobs_received += ev->logprobs.size();
              const chat::StreamDelta d = parser->feed(ev->text);
              if (!d.empty() && !chunk(writer->delta(d), nullptr, nullptr)) {
                job->cancel();
                return false;
              }
              continue;
            }
            const GenerateResult& r = ev->result;
            log_result(r);
            chat::StreamDelta d = r.hit_eos ? parser->feed(chat::eos_token) : chat::StreamDelta{};
            const chat::StreamDelta tail = parser->finish();
            log_unparsed(*parser);
            d.reasoning_content += tail.reasoning_content;
            d.content += tail.content;
            d.tool_calls.insert(d.tool_calls.end(), tail.tool_calls.begin(), tail.tool_calls.end());
            logprobs->insert(logprobs->end(), r.logprobs.begin() + std::min(*logprobs_received, r.logprobs.size()),
                             r.logprobs.end());
            if (!d.empty() || !logprobs->empty()) chunk(writer->delta(d), nullptr, nullptr);
            const bool calls = !parser->message().tool_calls.empty();
            chunk(json::object(), finish_name(r, calls), nullptr);
            if (include_usage) {
              const json u = usage_json(r);
              json j = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
                        {"choices", json::array()}, {"usage", u}};
              const std::string s = "data: " + dump(j) + "\n\n";
              sink.write(s.data(), s.size());
            }
            *state = 2;
            return close(true);
          }
        }),
        [job](bool) { job->cancel(); });  // released: cancel if still running (no-op when done)
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
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
    auto job = submit(make_request(common, std::move(prompt)));
    const std::string id = random_id("cmpl-"), model = c.model.empty() ? engine.name() : c.model;
    const long long created = now_s();
    auto body = [id, model, created](const std::string& text, const json& finish) {
      return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
                  {"choices", json::array({{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}}})}};
    };
    const bool want_logprobs = c.logprobs >= 0, token_ids = c.token_ids;
    const Tokenizer* tokenizer = &engine.tokenizer();  // outlives the stream (the server)
    if (!c.stream) {
      const GenerateResult r = wait(*job, req);
      log_result(r);
      json j = body(r.text, finish_name(r, false));
      if (want_logprobs) j["choices"][0]["logprobs"] = completion_logprobs(*tokenizer, r.logprobs, token_ids, 0);
      j["usage"] = usage_json(r);
      send_json(res, 200, j);
      return;
    }
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
            auto ev = job->next(200ms);
            if (!ev) {
              if (!sink.is_writable()) {
                job->cancel();
                return false;
              }
              continue;
            }
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

  // POST /v1/messages (Anthropic): the chat pipeline, answered as content blocks or as
  // Anthropic's event stream (anthropic_api.h).
  void messages(const httplib::Request& req, httplib::Response& res) {
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
      chat::StreamParser parser(tmode, /*whole_calls=*/true);
      parser.feed(r.text);
      if (r.hit_eos) parser.feed(chat::eos_token);
      parser.finish();
      log_unparsed(parser);
      send_json(res, 200, message_response(id, model, parser.message(), r));
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
            auto ev = job->next(200ms);
            if (!ev) {
              if (!sink.is_writable()) {
                job->cancel();
                return false;
              }
              continue;
            }
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
  void count_tokens(const httplib::Request& req, httplib::Response& res) {
    const MessagesRequest c = parse_count_tokens_request(req.body, opt.default_reasoning);
    send_json(res, 200, {{"input_tokens", chat_prompt(c).size()}});
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, tokenize_response(engine, req.body, opt.default_reasoning, opt.ctx));
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    send_json(res, 200, detokenize_response(engine, req.body));
  }

  // POST /slots/{id}?action=save|restore|erase, as llama-server: a free slot's conversation
  // (its tokens and cache: runtime/snapshot_file.h) saved to --slot-save-path/{filename},
  // restored from there (checked: the same checkpoint and settings, sound bytes), or cleared.
  // The next request that continues the conversation then prefills only what is new.
  void slots(const httplib::Request& req, httplib::Response& res) {
    const std::string& id_text = req.matches[1];
    if (id_text.size() > 6) throw ApiError(400, "slot " + id_text + " does not exist");
    const int id = std::stoi(id_text);
    const std::string action = req.get_param_value("action");
    const auto t0 = std::chrono::steady_clock::now();
    const auto ms = [&] {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    try {
      if (action == "erase") {
        const size_t n = scheduler.erase_slot(id);
        send_json(res, 200, {{"id_slot", id}, {"n_erased", n}});
        return;
      }
      if (action != "save" && action != "restore")
        throw ApiError(400, "action must be save, restore or erase, got '" + action + "'", "invalid_request_error",
                       "action");
      if (opt.slot_save_path.empty())
        throw ApiError(400, "saving and restoring slots needs dsv4 serve --slot-save-path DIR");
      json body;
      try {
        body = parse_json<json>(req.body);
      } catch (const std::exception& e) {
        throw ApiError(400, std::string("the body is not JSON: ") + e.what());
      }
      const std::string name = body.is_object() && body.contains("filename") && body["filename"].is_string()
                                   ? body["filename"].get<std::string>()
                                   : "";
      if (name.empty() || name.size() > 200 || name == "." || name == ".." ||
          name.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
        throw ApiError(400, "filename must be a plain file name (no directories), up to 200 bytes",
                       "invalid_request_error", "filename");
      const std::string path = (std::filesystem::path(opt.slot_save_path) / name).string();
      if (action == "save") {
        const Snapshot snap = scheduler.save_slot(id);
        const std::string bytes = encode_snapshot(snap, fingerprint);
        write_file(path + ".tmp", bytes);
        std::filesystem::rename(path + ".tmp", path);
        send_json(res, 200, {{"id_slot", id}, {"filename", name}, {"n_saved", snap.tokens.size()},
                             {"n_written", bytes.size()}, {"timings", {{"save_ms", ms()}}}});
        return;
      }
      if (!std::filesystem::exists(path)) throw ApiError(404, "no saved slot named '" + name + "'", "invalid_request_error", "filename");
      const std::string bytes = read_file(path);
      Snapshot snap = decode_snapshot(bytes, fingerprint, engine.model(), name);
      const size_t n = snap.tokens.size();
      scheduler.restore_slot(id, std::move(snap));
      send_json(res, 200, {{"id_slot", id}, {"filename", name}, {"n_restored", n}, {"n_read", bytes.size()},
                           {"timings", {{"restore_ms", ms()}}}});
    } catch (const Busy& e) {
      throw ApiError(409, e.what(), "invalid_request_error", "", "slot_busy");
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
  }

  // Wraps a handler: ApiError and any other exception become JSON errors, never a crash.
  httplib::Server::Handler guard(void (Impl::*h)(const httplib::Request&, httplib::Response&)) {
    return [this, h](const httplib::Request& req, httplib::Response& res) {
      // No request timeout while a request is handled, nor while its answer streams.
      if (watchdog) watchdog->handling(req.remote_addr, req.remote_port);
      try {
        (this->*h)(req, res);
      } catch (const ApiError& e) {
        send_error(req, res, e);
      } catch (const std::exception& e) {
        send_error(req, res, ApiError(500, e.what(), "server_error"));
      }
    };
  }

  // The Host header's name (port dropped), lower case; "" when there is none.
  static std::string host_name(const std::string& header) {
    std::string h = header;
    if (h.starts_with("[")) h = h.substr(0, h.find(']') + 1);   // [::1]:8000
    else if (const size_t colon = h.find(':'); colon != std::string::npos) h.resize(colon);
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
    return h;
  }

  bool host_allowed(const httplib::Request& req) const {
    if (!req.has_header("Host")) return true;  // HTTP/1.0 clients; browsers always send one
    const std::string name = host_name(req.get_header_value("Host"));
    std::vector<std::string> allowed = opt.allowed_hosts;
    if (allowed.empty()) {
      const bool loopback = opt.host == "localhost" || opt.host == "::1" || opt.host.starts_with("127.");
      if (!loopback) return true;
      allowed = {"localhost", "127.0.0.1", "[::1]"};
    }
    for (const std::string& a : allowed)
      if (a == "*" || host_name(a) == name) return true;
    return false;
  }

  // Before any route: the Host header, and JSON bodies only (a cross-site form or text/plain
  // POST is exactly what a web page may send without asking).
  httplib::Server::HandlerResponse screen(const httplib::Request& req, httplib::Response& res) const {
    access_log::begin();
    if (!host_allowed(req)) {
      send_error(req, res, ApiError(403, "Host '" + req.get_header_value("Host") + "' is not one this server answers to (" +
                                        "dsv4 serve --allowed-hosts)", "invalid_request_error", "", "host_not_allowed"));
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string origin = req.get_header_value("Origin");
    const bool cross_origin_ok = cors.allows(origin);
    if (cross_origin_ok) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
    }
    if (req.method == "OPTIONS") {  // a browser's preflight: no key needed, none sent
      if (!cross_origin_ok) {
        send_error(req, res, ApiError(403, "cross-origin requests from '" + origin + "' are not allowed (dsv4 serve " +
                                          "--allowed-origins)", "invalid_request_error", "", "origin_not_allowed"));
        return httplib::Server::HandlerResponse::Handled;
      }
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers",
                     CorsPolicy::echoed_headers(req.get_header_value("Access-Control-Request-Headers")));
      res.set_header("Access-Control-Max-Age", "600");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (keys.required() && req.path != "/health") {
      const std::string authorization = req.get_header_value("Authorization"), x_api_key = req.get_header_value("x-api-key");
      const std::string_view key = ApiKeys::presented(authorization, x_api_key);
      if (!keys.accepts(key)) {
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(req, res, ApiError(401, key.empty() ? "no API key given (send Authorization: Bearer KEY, or x-api-key: KEY)"
                                                  : "the API key given is not valid",
                                 "invalid_request_error", "", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (req.method == "POST") {
      std::string type = req.get_header_value("Content-Type");
      type = type.substr(0, type.find(';'));
      std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
      while (!type.empty() && type.back() == ' ') type.pop_back();
      if (type != "application/json") {
        send_error(req, res, ApiError(415, "the request body must be JSON sent with Content-Type: application/json, got '" +
                                          req.get_header_value("Content-Type") + "'",
                                 "invalid_request_error", "", "unsupported_media_type"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  void routes() {
    // SO_REUSEADDR (a restart need not wait out TIME_WAIT) but not httplib's default
    // SO_REUSEPORT, with which a second server on the same port starts and takes half the requests.
    http.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      listen_fd = sock;
    });
    http.new_task_queue = [n = opt.http_threads] { return new ConnectionPool(n); };
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      if (watchdog) watchdog->answered(req.remote_addr, req.remote_port);
      metrics.answered(route_of(req.path), res.status, access_log::seconds());
      if (opt.access_log) access_log::write(req.remote_addr, req.method, req.path, res.status, opt.log_prompts);
      else access_log::reset();
    });
    http.set_payload_max_length(opt.max_body_bytes);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return screen(req, res); });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const SchedulerStats s = scheduler.stats();
      json health = {{"status", "ok"}, {"active", s.active}, {"queued", s.queued}, {"completed", s.completed},
                     {"cancelled", s.cancelled}, {"refused", s.refused}, {"steps", s.steps},
                     {"step_tokens", s.step_tokens}, {"max_step_tokens", s.max_step_tokens},
                     {"speculative", {{"mode", spec_mode_name(opt.spec)}, {"draft", opt.draft},
                                      {"verify_steps", s.spec.steps}, {"drafted", s.spec.drafted},
                                      {"accepted", s.spec.accepted}, {"acceptance", s.spec.acceptance()},
                                      {"tokens_per_step", s.spec.tokens_per_step()}}}};
      if (const PrefixCache* cache = engine.prefix_cache()) {
        const PrefixCacheStats c = cache->stats();
        health["prefix_cache"] = {{"unit", cache->unit()},
                                  {"hits", c.hits},
                                  {"disk_hits", c.disk_hits},
                                  {"misses", c.misses},
                                  {"tokens_reused", c.tokens_reused},
                                  {"stored", c.stored},
                                  {"ram", {{"entries", c.entries}, {"bytes", c.bytes}, {"budget", c.budget},
                                           {"evictions", c.evictions}}},
                                  {"disk", {{"entries", c.disk_entries}, {"bytes", c.disk_bytes},
                                            {"budget", c.disk_budget}, {"written", c.disk_written},
                                            {"evictions", c.disk_evictions}, {"bad_files", c.disk_bad}}}};
      }
      send_json(res, 200, health);
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      const PrefixCache* cache = engine.prefix_cache();
      const PrefixCacheStats c = cache ? cache->stats() : PrefixCacheStats{};
      res.set_content(metrics.render(scheduler.stats(), cache ? &c : nullptr), "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"object", "list"},
                           {"data", json::array({{{"id", engine.name()}, {"object", "model"}, {"created", now_s()},
                                                  {"owned_by", "dsv4"}}})}});
    });
    http.Post("/v1/chat/completions", guard(&Impl::chat_completions));
    http.Post("/v1/completions", guard(&Impl::completions));
    http.Post("/v1/messages", guard(&Impl::messages));
    http.Post("/v1/messages/count_tokens", guard(&Impl::count_tokens));
    http.Post("/tokenize", guard(&Impl::tokenize));
    http.Post("/detokenize", guard(&Impl::detokenize));
    http.Post(R"(/slots/(\d+))", guard(&Impl::slots));
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      ApiError e(res.status, "no route " + req.method + " " + req.path, "invalid_request_error", "", "not_found");
      if (res.status == 413) {
        e.message = "the request body is over the limit of " + std::to_string(opt.max_body_bytes) + " bytes (dsv4 serve --max-body)";
        e.code = "body_too_large";
      } else if (res.status != 404) {
        e.message = "HTTP " + std::to_string(res.status);
        e.code = "";
      }
      send_error(req, res, e);
    });
    http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(req, res, ApiError(500, what, "server_error"));
    });
  }
};

OpenAIServer::OpenAIServer(const Engine& e, ServerOptions o) : impl_(std::make_unique<Impl>(e, std::move(o))) {
  impl_->routes();
}

OpenAIServer::~OpenAIServer() = default;

void OpenAIServer::run(const std::function<void(int)>& on_listening) {
  const std::string& host = impl_->opt.host;
  int port = impl_->opt.port;
  errno = 0;
  if (port == 0) port = impl_->http.bind_to_any_port(host);
  else if (!impl_->http.bind_to_port(host, port)) port = -1;
  if (port <= 0) throw Error(listen_error(host, impl_->opt.port, errno));
  // httplib listens with a backlog of 5: a burst of connections beyond that is refused or
  // retried by the kernel. listen() again on the bound socket sets the real backlog (the kernel
  // caps it at net.core.somaxconn).
  DSV4_CHECK(impl_->listen_fd >= 0 && ::listen(impl_->listen_fd, kListenBacklog) == 0,
             "cannot set the listen backlog on ", host, ":", port, ": ", std::strerror(errno));
  impl_->port = port;
  impl_->watchdog = std::make_unique<RequestWatchdog>(port, std::chrono::milliseconds(impl_->opt.request_timeout_ms));
  if (on_listening) on_listening(port);
  impl_->http.listen_after_bind();
  impl_->watchdog.reset();  // every connection thread has ended: nothing calls it any more
}

size_t OpenAIServer::stop() {
  const size_t cancelled = impl_->scheduler.close();
  impl_->http.stop();
  // httplib keeps serving an idle keep-alive connection until its timeout; ending each
  // connection now lets its worker, and so run(), return at once.
  if (impl_->port > 0)
    for (const ConnectionInfo& c : connections_on(impl_->port)) shutdown_connection(c);
  return cancelled;
}

}  // namespace dsv4
