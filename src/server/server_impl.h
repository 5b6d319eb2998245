// The server's state and routes (openai_server.h), shared by the files that implement them:
// openai_server.cpp (the common steps, screening, routing), openai_routes.cpp (chat and
// completions), anthropic_routes.cpp (Messages), responses_routes.cpp (Responses),
// slots_route.cpp (saved slots).
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chat/stream.h"
#include "runtime/scheduler.h"
#include "server/access.h"
#include "server/api_request.h"
#include "server/metrics.h"
#include "server/openai_server.h"
#include "server/request_watchdog.h"
#include "server/response_store.h"
#include "server/responses_api.h"

namespace dsv4 {

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
  // Responses kept for previous_response_id (Responses API): the last 1000, up to 256 MiB.
  ResponseStore stored_responses{1000, size_t{256} << 20};

  Impl(const Engine& e, ServerOptions o)
      : engine(e), opt(std::move(o)), scheduler(e, opt.parallel, opt.max_queue, opt.batch_tokens),
        keys(opt.api_keys), cors{opt.allowed_origins} {
    if (!opt.slot_save_path.empty()) fingerprint = e.snapshot_fingerprint();
  }

  // The steps every generating route takes (openai_server.cpp).
  //
  // The access log's figures of a generation (access_log.h): the prompt when it is known...
  void log_prompt(const std::vector<int>& prompt) const;
  // ... and what came of it (also counted in /metrics).
  void log_result(const GenerateResult& g);
  void log_sample(const GenerateResult& g);
  // The route a path took, as /metrics labels it: a fixed set, whatever clients send.
  static std::string route_of(const std::string& path);
  // Model output that is not the chat format it should be (a broken tool call) is answered as
  // text (chat::StreamParser's whole_calls) and noted here.
  static void log_unparsed(const chat::StreamParser& p);
  // A whole answer's text as the chat format reads it (whole calls only; see log_unparsed).
  static chat::ParsedMessage parsed_answer(const GenerateResult& r, chat::ThinkingMode mode);
  // The prompt of a chat request; what the encoder refuses is a 400 naming it.
  std::vector<int> chat_prompt(const ChatRequest& c) const;
  GenerateRequest make_request(const CommonRequest& c, std::vector<int> prompt);
  std::shared_ptr<Job> submit(GenerateRequest g);
  // c.n samples of the prompt (Scheduler::submit_samples), seeds seed, seed + 1, ...
  std::vector<std::shared_ptr<Job>> submit_samples(const CommonRequest& c, const std::vector<int>& prompt);
  // Waits for every sample (wait()); any failure cancels the others. Their results are logged.
  std::vector<GenerateResult> wait_all(const std::vector<std::shared_ptr<Job>>& jobs, const httplib::Request& req);
  // Waits for the end of a job, collecting its text; a job error becomes a 500. A client that
  // goes away meanwhile cancels the job, which frees its slot at the next step; a job cancelled
  // by shutdown becomes a 503.
  GenerateResult wait(Job& job, const httplib::Request& req);
  // What an event-stream route writes for a job's parsed text (Anthropic's and Responses'
  // streams): the opening events, the events of each parsed delta, the closing events once
  // the job ends (after the parser's tail went through delta), or those of a job's error.
  // Each gives the text to send ("" for nothing).
  struct EventWriter {
    std::function<std::string()> start;
    std::function<std::string(const chat::StreamDelta&)> delta;
    std::function<std::string(const GenerateResult&, const chat::ParsedMessage&)> finish;
    std::function<std::string(const std::string& error)> fail;
  };
  // Streams a job's text through a whole-calls parser as w's events; a client that goes away
  // or a write that fails cancels the job. The result is logged (log_result, log_unparsed).
  void stream_events(httplib::Response& res, std::shared_ptr<Job> job, chat::ThinkingMode mode, EventWriter w);

  // The routes. OpenAI's POST /v1/chat/completions and /v1/completions (openai_routes.cpp).
  void chat_completions(const httplib::Request& req, httplib::Response& res);
  void completions(const httplib::Request& req, httplib::Response& res);
  // POST /v1/messages (Anthropic): the chat pipeline, answered as content blocks or as
  // Anthropic's event stream (anthropic_api.h).
  void messages(const httplib::Request& req, httplib::Response& res);
  // POST /v1/messages/count_tokens: the prompt's length as /v1/messages would run it.
  void count_tokens(const httplib::Request& req, httplib::Response& res);
  // POST /v1/responses (OpenAI's Responses API, responses_api.h), GET and DELETE
  // /v1/responses/{id} on the stored ones (responses_routes.cpp).
  void responses(const httplib::Request& req, httplib::Response& res);
  void get_response(const httplib::Request& req, httplib::Response& res);
  void delete_response(const httplib::Request& req, httplib::Response& res);
  int reasoning_tokens(const GenerateResult& r, const chat::ParsedMessage& m) const;
  void remember(const ResponsesRequest& c, const nlohmann::ordered_json& response);
  // POST /tokenize and /detokenize (token_api.h; openai_server.cpp).
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);
  // POST /slots/{id}?action=save|restore|erase, as llama-server: a free slot's conversation
  // (its tokens and cache: runtime/snapshot_file.h) saved to --slot-save-path/{filename},
  // restored from there (checked: the same checkpoint and settings, sound bytes), or cleared.
  // The next request that continues the conversation then prefills only what is new.
  void slots(const httplib::Request& req, httplib::Response& res);

  // Screening and routing (openai_server.cpp).
  //
  // Wraps a handler: ApiError and any other exception become JSON errors, never a crash.
  httplib::Server::Handler guard(void (Impl::*h)(const httplib::Request&, httplib::Response&));
  // The Host header's name (port dropped), lower case; "" when there is none.
  static std::string host_name(const std::string& header);
  bool host_allowed(const httplib::Request& req) const;
  // Before any route: the Host header, and JSON bodies only (a cross-site form or text/plain
  // POST is exactly what a web page may send without asking).
  httplib::Server::HandlerResponse screen(const httplib::Request& req, httplib::Response& res) const;
  void routes();
};

}  // namespace dsv4
