// The server: the steps every generating route takes, screening (Host, CORS, keys, JSON
// bodies), routing, and the listening socket. The routes are in openai_routes.cpp,
// anthropic_routes.cpp, responses_routes.cpp and slots_route.cpp (server_impl.h).
#include "server/openai_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>

#include "core/check.h"
#include "server/access_log.h"
#include "server/connection_pool.h"
#include "server/connections.h"
#include "server/replies.h"
#include "server/server_impl.h"
#include "server/token_api.h"

namespace dsv4 {

using json = nlohmann::ordered_json;
using namespace std::chrono_literals;

// The access log's figures of a generation (access_log.h): the prompt when it is known...
void OpenAIServer::Impl::log_prompt(const std::vector<int>& prompt) const {
  RequestRecord& r = access_log::current();
  r.prompt_tokens = static_cast<int>(prompt.size());
  if (opt.log_prompts) r.prompt_text = engine.tokenizer().decode(prompt);
}

// ... and what came of it (also counted in /metrics).
void OpenAIServer::Impl::log_result(const GenerateResult& g) {
  RequestRecord& r = access_log::current();
  r.cached_tokens = g.reused_tokens;
  r.completion_tokens = static_cast<int>(g.tokens.size()) + (g.hit_eos ? 1 : 0);
  metrics.generated(g.prompt_tokens, r.cached_tokens, r.completion_tokens);
}

// The route a path took, as /metrics labels it: a fixed set, whatever clients send.
std::string OpenAIServer::Impl::route_of(const std::string& path) {
  for (const char* r : {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/messages",
                        "/v1/messages/count_tokens", "/v1/responses", "/tokenize", "/detokenize"})
    if (path == r) return r;
  if (path.starts_with("/v1/responses/")) return "/v1/responses/{id}";
  if (path.starts_with("/slots/")) return "/slots/{id}";
  return "other";
}

// Model output that is not the chat format it should be (a broken tool call) is answered as
// text (chat::StreamParser's whole_calls) and noted here.
void OpenAIServer::Impl::log_unparsed(const chat::StreamParser& p) {
  if (!p.error().empty()) std::cerr << ("dsv4 serve: model output answered as text: " + p.error() + "\n") << std::flush;
}

chat::ParsedMessage OpenAIServer::Impl::parsed_answer(const GenerateResult& r, chat::ThinkingMode mode) {
  chat::StreamParser parser(mode, /*whole_calls=*/true);
  parser.feed(r.text);
  if (r.hit_eos) parser.feed(chat::eos_token);
  parser.finish();
  log_unparsed(parser);
  return parser.message();
}

// The prompt of a chat request; what the encoder refuses is a 400 naming it.
std::vector<int> OpenAIServer::Impl::chat_prompt(const ChatRequest& c) const {
  try {
    return chat_prompt_tokens(engine, c.messages, c.tools, c.mode);
  } catch (const Error& e) {
    throw ApiError(400, std::string("messages: ") + e.what(), "invalid_request_error", "messages");
  }
}

GenerateRequest OpenAIServer::Impl::make_request(const CommonRequest& c, std::vector<int> prompt) {
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
  g.format = c.format;
  g.answer_after_think = c.answer_after_think;
  if (g.format && g.answer_after_think && engine.tokenizer().special_id(std::string(chat::think_end)) < 0)
    throw ApiError(400, "response_format with reasoning needs the tokenizer's </think> token, which this model lacks",
                   "invalid_request_error", "response_format");
  for (const auto& [t, b] : g.adjust.bias)
    if (t >= engine.tokenizer().vocab_size())
      throw ApiError(400, "logit_bias: token " + std::to_string(t) + " is outside the vocabulary (" +
                              std::to_string(engine.tokenizer().vocab_size()) + " tokens)",
                     "invalid_request_error", "logit_bias");
  g.spec = opt.spec;
  g.draft = opt.draft;
  return g;
}

namespace {

// The scheduler's refusals as HTTP errors: a full queue is a 503, a bad request a 400.
template <class Submit>
auto submitted(Submit&& submit) {
  try {
    return submit();
  } catch (const Busy& b) {
    throw ApiError(503, b.what(), "server_error", "", "server_busy");
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
}

}  // namespace

void OpenAIServer::Impl::stream_events(httplib::Response& res, std::shared_ptr<Job> job, chat::ThinkingMode mode,
                                       EventWriter w) {
  auto parser = std::make_shared<chat::StreamParser>(mode, /*whole_calls=*/true);
  auto started = std::make_shared<bool>(false);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", safe_provider(job, [=, this](size_t, httplib::DataSink& sink) {
        const auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
        if (!*started) {
          *started = true;
          if (!write(w.start())) {
            job->cancel();
            return false;
          }
        }
        while (true) {
          auto ev = next_event(*job, sink);
          if (!ev) return false;
          if (ev->kind == JobEvent::delta) {
            if (!write(w.delta(parser->feed(ev->text)))) {
              job->cancel();
              return false;
            }
            continue;
          }
          if (ev->kind == JobEvent::error) {
            write(w.fail(ev->text));
          } else {
            const GenerateResult& r = ev->result;
            log_result(r);
            if (r.hit_eos) write(w.delta(parser->feed(chat::eos_token)));
            write(w.delta(parser->finish()));
            log_unparsed(*parser);
            write(w.finish(r, parser->message()));
          }
          sink.done();
          return true;
        }
      }),
      [job](bool) { job->cancel(); });  // released: cancel if still running (no-op when done)
}

std::shared_ptr<Job> OpenAIServer::Impl::submit(GenerateRequest g) {
  return submitted([&] { return scheduler.submit(std::move(g)); });
}

std::vector<std::shared_ptr<Job>> OpenAIServer::Impl::submit_samples(const CommonRequest& c,
                                                                     const std::vector<int>& prompt) {
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < c.n; ++i) {
    reqs.push_back(make_request(c, prompt));
    reqs.back().sampling.seed = c.sampling.seed + static_cast<uint64_t>(i);
  }
  return submitted([&] { return scheduler.submit_samples(std::move(reqs)); });
}

std::vector<GenerateResult> OpenAIServer::Impl::wait_all(const std::vector<std::shared_ptr<Job>>& jobs,
                                                         const httplib::Request& req) {
  std::vector<GenerateResult> out;
  try {
    for (const auto& job : jobs) out.push_back(wait(*job, req));
  } catch (...) {
    for (const auto& job : jobs) job->cancel();
    throw;
  }
  log_result(out.front());
  for (size_t i = 1; i < out.size(); ++i) log_sample(out[i]);
  return out;
}

// One prompt, more answers: a sample after the first adds only its completion tokens.
void OpenAIServer::Impl::log_sample(const GenerateResult& r) {
  const int tokens = static_cast<int>(r.tokens.size()) + (r.hit_eos ? 1 : 0);
  access_log::current().completion_tokens += tokens;
  metrics.generated(0, 0, tokens);
}

// Waits for the end of a job, collecting its text; a job error becomes a 500. A client that
// goes away meanwhile cancels the job, which frees its slot at the next step; a job cancelled
// by shutdown becomes a 503.
GenerateResult OpenAIServer::Impl::wait(Job& job, const httplib::Request& req) {
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

void OpenAIServer::Impl::tokenize(const httplib::Request& req, httplib::Response& res) {
  send_json(res, 200, tokenize_response(engine, req.body, opt.default_reasoning, opt.ctx));
}

void OpenAIServer::Impl::detokenize(const httplib::Request& req, httplib::Response& res) {
  send_json(res, 200, detokenize_response(engine, req.body));
}

// Wraps a handler: ApiError and any other exception become JSON errors, never a crash.
httplib::Server::Handler OpenAIServer::Impl::guard(void (Impl::*h)(const httplib::Request&, httplib::Response&)) {
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
std::string OpenAIServer::Impl::host_name(const std::string& header) {
  std::string h = header;
  if (h.starts_with("[")) h = h.substr(0, h.find(']') + 1);   // [::1]:8000
  else if (const size_t colon = h.find(':'); colon != std::string::npos) h.resize(colon);
  return ascii_lower(h);
}

bool OpenAIServer::Impl::host_allowed(const httplib::Request& req) const {
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
httplib::Server::HandlerResponse OpenAIServer::Impl::screen(const httplib::Request& req, httplib::Response& res) const {
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
    res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
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
    const std::string header = req.get_header_value("Content-Type");
    std::string type = ascii_lower(header.substr(0, header.find(';')));
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

void OpenAIServer::Impl::routes() {
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
    metrics.answered(access_log::seconds());
    if (opt.access_log) access_log::write(req.remote_addr, req.method, req.path, res.status, opt.log_prompts);
    else access_log::reset();
  });
  // httplib calls this after the handler (and the error handler), just before it writes.
  http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    metrics.answering(route_of(req.path), res.status);
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
  http.Post("/v1/responses", guard(&Impl::responses));
  http.Get(R"(/v1/responses/([A-Za-z0-9_-]+))", guard(&Impl::get_response));
  http.Delete(R"(/v1/responses/([A-Za-z0-9_-]+))", guard(&Impl::delete_response));
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
