// dsv4 serve: the OpenAI-compatible HTTP server (see server/openai_server.h). The first SIGINT
// or SIGTERM stops it cleanly and quickly (requests in flight cancelled, connections closed);
// a second one ends it at once.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>

#include "core/check.h"
#include "core/thread_pool.h"
#include "dist/comm.h"
#include "ckpt/info.h"
#include "server/access.h"
#include "server/connections.h"
#include "server/openai_server.h"
#include "tools/commands.h"
#include "tools/generation.h"
#include "tools/options.h"
#include "tools/progress.h"
#include "tools/stop_signals.h"

namespace dsv4::tools {

namespace {

struct ServeArgs {
  std::string model_dir, reasoning = "none", chat_format = "auto", spec = "auto";
  int draft = -1;
  ServerOptions opt;
  int threads = 0;
  double http_timeout_s = 30;
  WeightsIn weights = WeightsIn::automatic;
  bool batch_tokens_given = false;
  CacheArgs cache;
  std::string api_key_file;
};

int run(ServeArgs& a) {
  DSV4_CHECK(a.opt.port >= 0 && a.opt.port <= 65535, "--port must be in [0, 65535]");
  DSV4_CHECK(a.opt.ctx >= 16, "--ctx must be at least 16");
  DSV4_CHECK(a.opt.parallel >= 1, "--parallel must be at least 1, got ", a.opt.parallel);
  if (!a.batch_tokens_given) a.opt.batch_tokens = std::max(a.opt.batch_tokens, a.opt.parallel);
  DSV4_CHECK(a.opt.batch_tokens >= a.opt.parallel, "--batch-tokens (", a.opt.batch_tokens,
             ") must be at least --parallel (", a.opt.parallel, "): every decoding request takes one token of each step");
  DSV4_CHECK(a.opt.default_max_tokens >= 1, "--max-tokens must be at least 1, got ", a.opt.default_max_tokens);
  DSV4_CHECK(a.opt.http_threads >= 2, "--http-threads must be at least 2, got ", a.opt.http_threads);
  DSV4_CHECK(a.http_timeout_s > 0 && a.http_timeout_s <= 86400, "--http-timeout must be in (0, 86400] seconds, got ",
             a.http_timeout_s);
  a.opt.request_timeout_ms = std::llround(a.http_timeout_s * 1000);
  DSV4_CHECK(a.opt.max_body_bytes >= 1024, "--max-body must be at least 1k, got ", a.opt.max_body_bytes);
  check_cache_args(a.cache);
  if (!a.api_key_file.empty())
    for (std::string& k : ApiKeys::from_file(a.api_key_file)) a.opt.api_keys.push_back(std::move(k));
  (void)ApiKeys(a.opt.api_keys);  // checked before the model loads
  for (const std::string& o : a.opt.allowed_origins)
    DSV4_CHECK(o == "*" || o.starts_with("http://") || o.starts_with("https://"),
               "--allowed-origins: '", o, "' is not an origin (scheme://host[:port], or *)");
  if (!a.opt.slot_save_path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(a.opt.slot_save_path, ec);
    DSV4_CHECK(std::filesystem::is_directory(a.opt.slot_save_path), "--slot-save-path ", a.opt.slot_save_path,
               ": not a directory and cannot be made one", ec ? " (" + ec.message() + ")" : "");
  }
  a.opt.default_reasoning = parse_reasoning_mode(a.reasoning);
  const bool leader = Comm::get().rank() == 0;
  if (a.opt.port != 0 && leader) check_can_listen(a.opt.host, a.opt.port);
  // The signals are taken before any thread starts (stop_signals.h). Before the server runs, the
  // first one ends the process, as the default action would; then it stops the server.
  std::mutex serving_mutex;
  OpenAIServer* serving = nullptr;
  std::optional<StopSignals> signals;
  if (leader)
    signals.emplace([&] {
      std::lock_guard lock(serving_mutex);
      if (!serving) {
        std::cerr << "dsv4 serve: interrupted" << std::endl;
        _exit(130);
      }
      std::cerr << "dsv4 serve: stopping (press Ctrl-C again to exit at once)" << std::endl;
      const size_t cancelled = serving->stop();
      // One write per line: the access log writes from other threads meanwhile.
      if (cancelled) std::cerr << ("dsv4 serve: cancelled " + std::to_string(cancelled) + " request(s)\n") << std::flush;
    });
  set_num_threads(a.threads);
  ProgressBar bar("loading");
  Engine engine(a.model_dir, [&](const std::string& what) { bar.update(0.5, what); },
                ModelOptions{.weights = a.weights});
  bar.done(a.model_dir);
  if (a.chat_format != "auto") engine.set_chat_format(chat::parse_chat_format(a.chat_format));
  if (leader) enable_prefix_cache(engine, a.cache);
  const SpecChoice spec = chosen_spec(engine.model().config(), a.spec, a.draft);
  a.opt.spec = spec.mode;
  a.opt.draft = spec.draft;
  // Under mpirun rank 0 serves and leads; the other ranks run its forward passes with it.
  if (!leader) {
    engine.follow();
    return 0;
  }
  engine.lead();
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not the end
  OpenAIServer server(engine, a.opt);
  {
    std::lock_guard lock(serving_mutex);
    serving = &server;
  }
  server.run([&](int port) {
    std::cerr << "dsv4 serve: " << model_banner(engine) << "\ndsv4 serve: model '" << engine.name()
              << "' on http://" << a.opt.host << ":" << port << " (parallel " << a.opt.parallel << ", ctx "
              << a.opt.ctx << ")" << std::endl;
  });
  signals.reset();  // before the server goes: no stop() after this
  engine.stop_followers();
  std::cerr << "dsv4 serve: stopped\n";
  return 0;
}

}  // namespace

void add_serve(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  sub->add_option("-m,--model", a->model_dir, "checkpoint directory (with tokenizer.json)")->required();
  add_weights_option(sub, a->weights);
  sub->add_option("--host", a->opt.host, "address to listen on");
  sub->add_option("--port", a->opt.port, "port (0 = any free port)");
  sub->add_option("--parallel,--np", a->opt.parallel, "generations advancing together");
  sub->add_option("--queue", a->opt.max_queue, "requests that may wait beyond those");
  CLI::Option* batch_tokens = sub->add_option("--batch-tokens", a->opt.batch_tokens,
                  "tokens per forward pass: every decoding request's next one plus prefill chunks up to this "
                  "(default 64, or --parallel if larger)");
  add_ctx_option(sub, a->opt.ctx, "context limit per request: prompt + max_tokens");
  sub->add_option("-n,--max-tokens,--n-predict", a->opt.default_max_tokens, "max_tokens when a chat request gives none");
  sub->add_option("--reasoning", a->reasoning, "default reasoning mode: none, low, high or max");
  add_chat_format_option(sub, a->chat_format);
  add_threads_option(sub, a->threads);
  sub->add_option("--max-body", a->opt.max_body_bytes, "largest request body in bytes (16M, 512k accepted)")
      ->transform(CLI::AsSizeValue(false).description(""));
  sub->add_option("--allowed-hosts", a->opt.allowed_hosts,
                  "Host headers answered, comma-separated (\"*\" = any; unset: the loopback names for a loopback "
                  "--host, any name otherwise)")
      ->delimiter(',');
  sub->add_option("--api-key", a->opt.api_keys,
                  "key every request but GET /health must present (Authorization: Bearer KEY or x-api-key: KEY); "
                  "may be given more than once")
      ->take_all()->allow_extra_args(false);
  sub->add_option("--api-key-file", a->api_key_file, "file of such keys, one per line ('#' starts a comment)")
      ->type_name("FILE");
  sub->add_option("--allowed-origins", a->opt.allowed_origins,
                  "browser origins allowed to call the server, comma-separated (CORS; \"*\" = any; unset: none)")
      ->delimiter(',');
  sub->add_flag("--log-prompts", a->opt.log_prompts, "put each request's prompt text in its access-log line");
  sub->add_flag("!--no-access-log", a->opt.access_log, "no line on stderr per request");
  sub->add_option("--http-threads", a->opt.http_threads,
                  "connections served at once, a thread each, started as connections arrive");
  sub->add_option("--http-timeout", a->http_timeout_s,
                  "seconds a connection has to send each whole request (head and body) before it is closed");
  add_spec_options(sub, a->spec, a->draft, " of every request");
  add_cache_options(sub, a->cache);
  sub->add_option("--slot-save-path", a->opt.slot_save_path,
                  "directory of saved conversations: POST /slots/{id}?action=save|restore with {\"filename\": NAME}")
      ->type_name("DIR");
  sub->add_flag("--test-hooks", a->opt.test_hooks, "accept dsv4_forced_text in requests (tests only)");
  out.push_back({sub, [a, batch_tokens] {
                   a->batch_tokens_given = batch_tokens->count() > 0;
                   return run(*a);
                 }});
}

}  // namespace dsv4::tools
