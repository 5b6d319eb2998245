// dsv4: the single command. Each subcommand lives in its own cmd_*.cpp and registers itself
// here; errors (dsv4::Error) are printed as "dsv4: error: ..." with exit status 1, and so is a
// failed write to standard output (a full disk, a closed pipe), which would otherwise go unseen.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "core/check.h"
#include "dist/comm.h"
#include "tools/commands.h"
#include "tools/version.h"

int main(int argc, char** argv) {
  dsv4::Comm::init(&argc, &argv);
  CLI::App app{"dsv4: a CPU engine for the DeepSeek-V4 model family"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", std::string("dsv4 ") + dsv4::version_string, "the commit dsv4 was built from");
  // Every option's default shows in --help (inherited by the subcommands added below).
  app.option_defaults()->always_capture_default();
  std::vector<dsv4::tools::Command> commands;
  dsv4::tools::add_logits(app, commands);
  dsv4::tools::add_info(app, commands);
  dsv4::tools::add_tokenize(app, commands);
  dsv4::tools::add_render(app, commands);
  dsv4::tools::add_parse(app, commands);
  dsv4::tools::add_synth(app, commands);
  dsv4::tools::add_run(app, commands);
  dsv4::tools::add_chat(app, commands);
  dsv4::tools::add_serve(app, commands);
  dsv4::tools::add_bench(app, commands);
  dsv4::tools::add_convert(app, commands);
  dsv4::tools::add_perplexity(app, commands);
  dsv4::tools::add_train(app, commands);
  dsv4::tools::add_plot_runs(app, commands);
  dsv4::tools::add_eval(app, commands);
  dsv4::tools::add_make_task_data(app, commands);
  dsv4::tools::add_post_training(app, commands);
  dsv4::tools::add_train_tokenizer(app, commands);
  dsv4::tools::add_prepare_brown(app, commands);
  dsv4::tools::add_prepare_gutenberg(app, commands);
  dsv4::tools::add_make_chat_data(app, commands);
  if (argc > 1 && argv[1][0] != '-' && std::none_of(commands.begin(), commands.end(),
                                                   [&](const auto& c) { return c.sub->get_name() == argv[1]; })) {
    std::cerr << "dsv4: error: unknown command '" << argv[1] << "' (commands:";
    for (const auto& c : commands) std::cerr << " " << c.sub->get_name();
    std::cerr << ")\n";
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (app.get_subcommands().empty()) {  // bare `dsv4`: what it can do, and a failed status
    std::cerr << app.help();
    return 1;
  }
  const dsv4::Comm& comm = dsv4::Comm::get();
  // Under mpirun rank 0 speaks for the job; the other ranks only report their errors.
  std::ostream err(std::cerr.rdbuf());
  if (comm.rank() > 0) {
    std::cout.rdbuf(nullptr);
    std::cerr.rdbuf(nullptr);
    if (!std::freopen("/dev/null", "w", stdout)) return 1;  // printf too
  }
  // Under mpirun an error on one rank must end them all (the others would wait in a collective).
  auto failed = [&](const char* what) {
    err << "dsv4: error: " << (comm.distributed() ? "rank " + std::to_string(comm.rank()) + ": " : "")
              << what << "\n";
    if (comm.distributed()) comm.abort(1);
    return 1;
  };
  int status = 0;
  try {
    for (auto& c : commands)
      if (c.sub->parsed()) status = c.run();
  } catch (const std::exception& e) {
    return failed(e.what());
  }
  std::cout.flush();
  if (comm.rank() == 0 && (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout)))
    return failed((std::string("cannot write to standard output: ") + std::strerror(errno)).c_str());
  return status;
}
