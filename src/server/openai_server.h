// The OpenAI-compatible HTTP server: GET /health, GET /v1/models, POST /v1/chat/completions
// (plain and SSE streaming, reasoning_content, DSML tool calls as tool_calls, usage),
// POST /v1/completions, POST /tokenize and /detokenize, GET /metrics (Prometheus). Requests are validated field by field; every failure is a 4xx/5xx
// JSON body in OpenAI's error shape. POST bodies must be JSON (Content-Type application/json:
// a web page cannot send one cross-site without the browser asking first) and at most
// max_body_bytes; the Host header must be one the server answers to. Generation runs on the runtime Scheduler; a streaming
// client that disconnects cancels its generation, streaming or not. Links the runtime and chat
// layers only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/chat_prompt.h"
#include "runtime/engine.h"

namespace dsv4 {

constexpr int kListenBacklog = 1024;
// Tokens per forward pass of the scheduler: every decoding request's next token plus prefill
// chunks up to this. On the flash-6l synth with 2 threads prefill runs at the same rate from 16
// to 256 tokens per pass (42-48 tok/s; 37 at 512), while a decoding stream waits a whole pass
// per token during another's prefill: 64 bounds that wait at ~1.4 s there and keeps the
// per-pass weight reads a few percent of a prefill pass (README "Batched serving").
constexpr int kDefaultBatchTokens = 64;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;              // 0 = pick a free port (see on_listening)
  int parallel = 4;             // generations advancing together
  int batch_tokens = kDefaultBatchTokens;  // tokens per step, >= parallel (runtime/scheduler.h)
  size_t max_queue = 64;        // waiting requests beyond which new ones get 503
  long long ctx = 65536;        // prompt + max_tokens limit per request
  // Connections served at once, a thread each, started as they arrive (connection_pool.h);
  // more wait in the listen queue of kListenBacklog.
  int http_threads = 512;
  // A connection must deliver each whole request within this time, or it is closed
  // (request_watchdog.h).
  long long request_timeout_ms = 30000;
  ReasoningMode default_reasoning = ReasoningMode::non_think;
  // Speculative decoding of every generation (runtime/speculative.h): the drafter, and the
  // tokens it proposes per pass (checked by check_spec).
  SpecMode spec = SpecMode::off;
  int draft = 0;
  bool test_hooks = false;      // honour "dsv4_forced_text" in requests (tests only)
  // Where POST /slots/{id}?action=save|restore keeps saved conversations (empty: refused).
  std::string slot_save_path;
  int default_max_tokens = 1024;
  size_t max_body_bytes = 16u << 20;  // larger bodies: 413 before they are parsed
  // Host headers accepted. Empty: for a loopback --host, the loopback names (localhost,
  // 127.0.0.1, [::1]), which keeps web pages from reaching a local server by DNS rebinding;
  // for any other --host, every name. "*" accepts every name.
  std::vector<std::string> allowed_hosts;
  // Keys a request must present (server/access.h); empty: none needed. /health is open.
  std::vector<std::string> api_keys;
  // Browser origins that may read the answers (CORS); "*" = any; empty: none.
  std::vector<std::string> allowed_origins;
  bool access_log = true;   // a line per request on stderr (server/access_log.h)
  bool log_prompts = false; // ... with the prompt's text
};

// Serves until stop(), called from another thread. on_listening gets the port. A port in
// use is an Error (the socket is bound without SO_REUSEPORT, so a second server cannot share
// it and take half of the requests).
class OpenAIServer {
 public:
  OpenAIServer(const Engine& e, ServerOptions o);
  ~OpenAIServer();
  void run(const std::function<void(int port)>& on_listening = {});
  // Refuses new requests, cancels those queued or running (their clients get 503 or an ended
  // stream), closes every connection, idle keep-alive ones included, and makes run() return.
  // Returns how many requests it cancelled. Not for a signal handler: use a thread.
  size_t stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4
