// dsv4 info: what a model is and what it costs, from a checkpoint (-m, validated and measured
// on disk) or a bare config.json (--config), and whether it fits this machine's memory.
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/memory.h"
#include "ckpt/cost.h"
#include "ckpt/info.h"
#include "model/model.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace dsv4::tools {

namespace {

struct InfoArgs {
  std::string model_dir, config;
  long long ctx = 4096;
  int ranks = 1;
  bool json = false;
};

// Weights (memory-mapped, so they must fit in memory not to be read from disk at every token)
// plus one session's KV cache at the context asked for, per rank with --ranks.
struct Fit {
  double weights = 0, kv = 0, total = 0;
  MachineMemory memory;
  bool fits() const { return memory.total > 0 && total <= memory.available; }
};

Fit fit_of(const ModelInfo& info, double weights) {
  Fit f;
  f.weights = weights;
  f.kv = info.kv_packed.at_ctx.total();
  f.total = f.weights + f.kv;
  f.memory = machine_memory();
  return f;
}

// For a model too big for one machine: the fewest ranks (a power of two) whose share fits a
// machine like this one, or the smallest share there is.
std::string split_advice(const ModelConfig& c, const Fit& f, long long ctx) {
  double smallest = 0;
  int smallest_ranks = 0;
  for (int r = 2; r <= c.n_routed_experts; r *= 2) {
    ModelInfo ri;
    try {
      ri = model_info(c, ctx, r);
    } catch (const Error&) {
      break;  // the split stops being possible
    }
    const double share = ri.bytes_per_rank + f.kv;
    if (share <= f.memory.total)
      return "; split over " + std::to_string(r) + " machines like this one (--ranks " + std::to_string(r) +
             ") it takes " + human_bytes(share) + " each";
    smallest = share;
    smallest_ranks = r;
  }
  if (smallest_ranks == 0) return "";
  return "; no split does either (" + std::to_string(smallest_ranks) + " ranks would need " + human_bytes(smallest) +
         " each)";
}

std::string fit_line(const ModelConfig& c, const Fit& f, const ModelInfo& info) {
  std::string s = "fit: weights " + human_bytes(f.weights) + " + KV cache " + human_bytes(f.kv) + " at ctx " +
                  std::to_string(info.ctx) + " = " + human_bytes(f.total) + (info.ranks > 1 ? " per rank" : "");
  if (f.memory.total <= 0) return s + "; this machine's memory is unknown\n";
  s += "; this machine has " + human_bytes(f.memory.total) + " (" + human_bytes(f.memory.available) + " available): ";
  if (f.fits()) return s + "fits" + (info.ranks > 1 ? " (each rank on a machine like this one)" : "") + "\n";
  if (f.total <= f.memory.total) return s + "fits only once other programs free memory\n";
  return s + "does not fit (the weights would be read from disk at every token)" +
         (info.ranks == 1 ? split_advice(c, f, info.ctx) : "") + "\n";
}

int run(const InfoArgs& a) {
  DSV4_CHECK(a.model_dir.empty() != a.config.empty(), "give exactly one of -m DIR or --config FILE");
  DSV4_CHECK(a.ctx >= 0, "--ctx must be >= 0");
  std::unique_ptr<Model> model;
  ModelConfig cfg;
  if (!a.model_dir.empty()) {
    model = std::make_unique<Model>(a.model_dir);
    cfg = model->config();
  } else {
    cfg = load_config(a.config);
  }
  const ModelInfo info = model_info(cfg, a.ctx, a.ranks);
  const double weights = info.ranks > 1 ? info.bytes_per_rank
                         : model        ? static_cast<double>(model->checkpoint().bytes_on_disk())
                                        : info.bytes_expected;
  const Fit fit = fit_of(info, weights);
  const double decode_bytes = token_cost(cfg).weight_bytes;
  if (a.json) {
    nlohmann::json j = info_json(info);
    j["decode_weight_bytes_per_token"] = static_cast<long long>(decode_bytes);
    if (model) j["bytes_on_disk"] = model->checkpoint().bytes_on_disk();
    j["fit"] = {{"weight_bytes", static_cast<long long>(fit.weights)}, {"kv_bytes", static_cast<long long>(fit.kv)},
                {"total_bytes", static_cast<long long>(fit.total)},
                {"memory_total_bytes", static_cast<long long>(fit.memory.total)},
                {"memory_available_bytes", static_cast<long long>(fit.memory.available)}, {"fits", fit.fits()}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << info_text(cfg, info);
  std::cout << "decode reads " << human_bytes(decode_bytes) << " of weights per token (main model)\n";
  if (model) std::cout << "checkpoint: " << a.model_dir << ", " << human_bytes(model->checkpoint().bytes_on_disk())
                       << " in " << model->checkpoint().files().size() << " file(s), all "
                       << model->checkpoint().tensors().size() << " tensors validated\n";
  std::cout << fit_line(cfg, fit, info);
  return 0;
}

}  // namespace

void add_info(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* sub = app.add_subcommand("info", "parameters, bytes, layer kinds, KV-cache sizes, fit in memory");
  sub->add_option("-m,--model", args->model_dir, "checkpoint directory");
  sub->add_option("--config", args->config, "a config.json alone (no weights)");
  add_ctx_option(sub, args->ctx, "context length for the KV-cache sizes");
  sub->add_option("--ranks", args->ranks, "model-parallel ranks: weight and KV bytes per rank");
  sub->add_flag("--json", args->json, "print one JSON object");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
