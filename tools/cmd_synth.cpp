// dsv4 synth: write a random-weight checkpoint in the official layout (see ckpt/synth.h).
#include <iostream>
#include <memory>

#include "core/check.h"
#include "ckpt/synth.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct SynthArgs {
  std::string out, preset = "tiny";
  uint64_t seed = 1;
  bool list = false;
};

int run(const SynthArgs& a) {
  if (a.list) {
    for (const auto& p : synth_presets()) std::cout << p.name << ": " << p.description << "\n";
    return 0;
  }
  DSV4_CHECK(!a.out.empty(), "-o DIR is required");
  const SynthPreset& p = synth_preset(a.preset);
  ProgressBar bar("synth " + p.name);
  write_synthetic_checkpoint(a.out, p, a.seed, [&](double f) { bar.update(f); });
  bar.done();
  std::cerr << "wrote " << a.out << " (random weights: the model produces noise)\n";
  return 0;
}

}  // namespace

void add_synth(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* sub = app.add_subcommand("synth", "write a random-weight checkpoint in the official layout");
  sub->add_option("-o,--out", args->out, "output directory");
  sub->add_option("--preset", args->preset, "model shape (see --list)");
  sub->add_option("--seed", args->seed, "random seed");
  sub->add_flag("--list", args->list, "list the presets");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
