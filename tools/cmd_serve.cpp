// dsv4 serve: the OpenAI-compatible HTTP server (see server/openai_server.h). SIGINT / SIGTERM
// stop it cleanly.
#include <csignal>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "dist/comm.h"
#include "core/thread_pool.h"
#include "server/openai_server.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct ServeArgs {
  std::string model_dir, reasoning = "none";
  ServerOptions opt;
  int threads = 0;
};

OpenAIServer* running = nullptr;
extern "C" void on_signal(int) {
  if (running) running->stop();
}

int run(ServeArgs& a) {
  set_num_threads(a.threads);
  DSV4_CHECK(a.opt.port >= 0 && a.opt.port <= 65535, "--port must be in [0, 65535]");
  DSV4_CHECK(a.opt.ctx >= 16, "--ctx must be at least 16");
  a.opt.default_reasoning = parse_reasoning_mode(a.reasoning);
  ProgressBar bar("loading");
  Engine engine(a.model_dir, [&](const std::string& what) { bar.update(0.5, what); });
  bar.done(a.model_dir);
  // Under mpirun rank 0 serves and leads; the other ranks run its forward passes with it.
  if (Comm::get().rank() > 0) {
    engine.model().follow();
    return 0;
  }
  engine.model().lead();
  OpenAIServer server(engine, a.opt);
  running = &server;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  server.run([&](int port) {
    std::cerr << "dsv4 serve: model '" << engine.name() << "' on http://" << a.opt.host << ":" << port
              << " (parallel " << a.opt.parallel << ", ctx " << a.opt.ctx << ")" << std::endl;
  });
  running = nullptr;
  engine.model().stop_followers();
  std::cerr << "dsv4 serve: stopped\n";
  return 0;
}

}  // namespace

void add_serve(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  sub->add_option("-m,--model", a->model_dir, "checkpoint directory (with tokenizer.json)")->required();
  sub->add_option("--host", a->opt.host, "address to listen on (default 127.0.0.1)");
  sub->add_option("--port", a->opt.port, "port (default 8000; 0 = any free port)");
  sub->add_option("--parallel", a->opt.parallel, "generations advancing together (default 4)");
  sub->add_option("--queue", a->opt.max_queue, "requests that may wait beyond those (default 64)");
  sub->add_option("--ctx", a->opt.ctx, "context limit per request: prompt + max_tokens (default 65536)");
  sub->add_option("--max-tokens", a->opt.default_max_tokens, "max_tokens when a chat request gives none");
  sub->add_option("--reasoning", a->reasoning, "default reasoning mode: none, high or max");
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  sub->add_flag("--test-hooks", a->opt.test_hooks, "accept dsv4_forced_text in requests (tests only)");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
