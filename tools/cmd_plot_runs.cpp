// dsv4 plot-runs: the loss curves of several `dsv4 train` runs side by side (their
// train_log.tsv), as one PNG, and a table of their losses at the evaluated steps.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "core/check.h"
#include "tools/commands.h"
#include "train/plot.h"

namespace dsv4::tools {

namespace {

struct PlotRunsArgs {
  std::vector<std::string> runs;  // DIR[:label]
  std::string out;
  double smoothing = 0.9;
};

struct RunLog {
  std::string label;
  std::vector<double> step, loss, eval_step, eval_loss;
};

RunLog read_log(const std::string& spec) {
  RunLog r;
  std::string dir = spec;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos) dir = spec.substr(0, colon), r.label = spec.substr(colon + 1);
  if (r.label.empty()) r.label = dir;
  const std::string path = dir + "/train_log.tsv";
  std::ifstream in(path);
  DSV4_CHECK(in.good(), path, ": cannot be read (not a dsv4 train output directory?)");
  std::string line;
  std::getline(in, line);
  DSV4_CHECK(line.rfind("step\tlr\tloss", 0) == 0, path, ": not a dsv4 training log");
  for (int row = 2; std::getline(in, line); ++row) {
    std::istringstream f(line);
    double step, lr, loss, mtp, index, norm, tps, eval;
    DSV4_CHECK(static_cast<bool>(f >> step >> lr >> loss >> mtp >> index >> norm >> tps >> eval), path, ":", row,
               ": malformed row");
    r.step.push_back(step), r.loss.push_back(loss);
    if (eval >= 0) r.eval_step.push_back(step), r.eval_loss.push_back(eval);
  }
  DSV4_CHECK(!r.step.empty(), path, ": no steps logged");
  return r;
}

int run(const PlotRunsArgs& a) {
  DSV4_CHECK(a.smoothing >= 0 && a.smoothing < 1, "--smoothing must be in [0, 1)");
  static const uint32_t colors[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0x9467bd, 0xff7f0e, 0x8c564b};
  std::vector<PlotSeries> series;
  std::vector<RunLog> logs;
  for (size_t i = 0; i < a.runs.size(); ++i) {
    logs.push_back(read_log(a.runs[i]));
    const RunLog& r = logs.back();
    const uint32_t color = colors[i % 6];
    PlotSeries train{r.label + " train (smoothed)", r.step, {}, color};
    double ema = r.loss.front();
    for (double l : r.loss) train.y.push_back(ema = a.smoothing * ema + (1 - a.smoothing) * l);
    series.push_back(train);
    if (!r.eval_step.empty()) series.push_back({r.label + " held-out", r.eval_step, r.eval_loss, (color & 0xfefefe) >> 1});
  }
  write_line_plot_png(a.out, series, {"loss curves", "step", "cross-entropy (nats)", 900, 540, false});
  // The table: held-out loss at every evaluated step the runs share.
  std::map<double, std::vector<double>> rows;
  for (size_t i = 0; i < logs.size(); ++i)
    for (size_t k = 0; k < logs[i].eval_step.size(); ++k) {
      auto& row = rows[logs[i].eval_step[k]];
      row.resize(logs.size(), NAN);
      row[i] = logs[i].eval_loss[k];
    }
  std::printf("%8s", "step");
  for (const RunLog& r : logs) std::printf("  %22s", r.label.c_str());
  std::printf("   (held-out loss, nats)\n");
  for (const auto& [step, row] : rows) {
    std::printf("%8.0f", step);
    for (double v : row) std::printf("  %22.4f", v);
    std::printf("\n");
  }
  std::printf("%8s", "final");
  for (const RunLog& r : logs) std::printf("  %22.4f", r.loss.back());
  std::printf("   (last step's training loss)\nwrote %s\n", a.out.c_str());
  return 0;
}

}  // namespace

void add_plot_runs(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<PlotRunsArgs>();
  CLI::App* sub = app.add_subcommand("plot-runs", "loss curves of dsv4 train runs side by side (PNG + table)");
  sub->add_option("--run", a->runs, "a dsv4 train output directory, DIR[:label] (repeatable)")->required();
  sub->add_option("-o,--out", a->out, "PNG to write")->required();
  sub->add_option("--smoothing", a->smoothing, "exponential smoothing of the training loss");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
