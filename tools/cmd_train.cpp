// dsv4 train: trains a DeepSeek-V4-architecture model on the CPU (see src/train/trainer.h):
// a progress bar with the loss, tokens/s, the achieved GFLOP/s against the FMA peak measured
// at the start, and the time left; a line per evaluation. Ctrl-C (or SIGTERM) saves the run
// after the step under way and ends it, to be resumed with --resume.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "core/fma_peak.h"
#include "core/memory.h"
#include "core/thread_pool.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/stop_signals.h"
#include "train/trainer.h"

namespace dsv4::tools {

namespace {

struct TrainArgs {
  TrainRun run;
  int threads = 0;
};

std::string duration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  return buf;
}

int run(TrainArgs& a) {
  // Before any thread starts (stop_signals.h): SIGINT or SIGTERM saves after the step under way
  // and ends the run; a second one ends it at once.
  std::atomic<bool> stop{false};
  const StopSignals signals([&stop] { stop.store(true); });
  a.run.should_stop = [&stop] { return stop.load(); };
  set_num_threads(a.threads);
  keep_freed_memory();
  ProgressBar bar("train");
  bar.message("measuring the FMA peak...");
  const double peak = measure_fma_peak_gflops();
  char peak_line[120];
  std::snprintf(peak_line, sizeof peak_line, "FMA peak %.1f GFLOP/s on %d thread(s)", peak, pool().size());
  bar.message(peak_line);
  double smoothed = -1;
  long long first_step = -1;
  const auto start = std::chrono::steady_clock::now();
  a.run.on_message = [&](const std::string& m) { bar.message(m); };
  a.run.on_step = [&](const StepLog& l, long long total) {
    if (first_step < 0) first_step = l.step - 1;
    smoothed = smoothed < 0 ? l.loss : 0.9 * smoothed + 0.1 * l.loss;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = elapsed / double(l.step - first_step) * double(total - l.step);
    char extra[240];
    std::snprintf(extra, sizeof extra, "step %lld/%lld loss %.3f (avg %.3f) %.0f tok/s %.1f GFLOP/s (%.0f%% of peak) ETA %s",
                  l.step, total, l.loss, smoothed, l.tokens_per_s, l.gflops, 100 * l.gflops / peak, duration(eta).c_str());
    bar.update(double(l.step) / double(total), extra);
    if (l.eval_loss >= 0) {
      char line[200];
      std::snprintf(line, sizeof line, "step %lld: train loss %.4f, held-out loss %.4f (perplexity %.2f), lr %.2e, grad norm %.3f",
                    l.step, smoothed, l.eval_loss, std::exp(l.eval_loss), l.lr, l.grad_norm);
      bar.message(line);
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<StepLog> log = train(a.run);
  bar.done();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!log.empty()) {
    const StepLog& last = log.back();
    std::printf("trained to step %lld in %s: loss %.4f", last.step, duration(secs).c_str(), last.loss);
    for (auto it = log.rbegin(); it != log.rend(); ++it)
      if (it->eval_loss >= 0) {
        std::printf(", held-out loss %.4f (perplexity %.2f)", it->eval_loss, std::exp(it->eval_loss));
        break;
      }
    double tok_s = 0, gflops = 0;
    int steps = 0;
    for (const StepLog& l : log)
      if (l.step > first_step) tok_s += l.tokens_per_s, gflops += l.gflops, ++steps;
    if (steps > 0)
      std::printf("\nthis run's steps: %.0f tok/s, %.1f GFLOP/s, %.0f%% of the %.1f GFLOP/s FMA peak", tok_s / steps,
                  gflops / steps, 100 * gflops / steps / peak, peak);
    std::printf("\ncheckpoint: %s (model.safetensors, config.json, tokenizer.json, train_state.safetensors, "
                "train_log.tsv, loss.png)\n", a.run.out_dir.c_str());
  }
  return 0;
}

}  // namespace

void add_train(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = app.add_subcommand("train", "train a DeepSeek-V4-architecture model (Muon + AdamW) on the CPU");
  sub->add_option("--config", a->run.config_path, "{\"model\": <config.json>, \"train\": {settings}}")->required();
  sub->add_option("--data", a->run.data, "training text, or chat examples (.jsonl); FILE:WEIGHT mixes several")
      ->required();
  sub->add_option("--tokenizer", a->run.tokenizer_path, "tokenizer.json (copied into the output)")->required();
  sub->add_option("--out", a->run.out_dir, "output directory (a loadable checkpoint + training state)")->required();
  sub->add_option("--eval", a->run.eval_path, "held-out text: its loss is logged every eval_every steps");
  sub->add_option("--init", a->run.init_dir, "start from this checkpoint (its float state when it has one)");
  sub->add_flag("--resume", a->run.resume, "continue the run saved in --out");
  sub->add_option("--stop-at", a->run.stop_at, "save and stop after this step (resume later with --resume)");
  sub->add_option("--steps", a->run.steps_override, "override train.steps");
  sub->add_option("--optimizer", a->run.optimizer_override, "override train.optimizer (muon or adamw)");
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
