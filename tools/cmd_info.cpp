// dsv4 info: what a model is and what it costs, from a checkpoint (-m, validated and measured
// on disk) or a bare config.json (--config).
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "model/cost.h"
#include "model/info.h"
#include "model/model.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

struct InfoArgs {
  std::string model_dir, config;
  long long ctx = 4096;
  int ranks = 1;
  bool json = false;
};

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
  if (a.json) {
    nlohmann::json j = info_json(info);
    j["decode_weight_bytes_per_token"] = token_cost(cfg).weight_bytes;
    if (model) j["bytes_on_disk"] = model->checkpoint().bytes_on_disk();
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << info_text(cfg, info);
  std::cout << "decode reads " << token_cost(cfg).weight_bytes / 1e9 << " GB of weights per token (main model)\n";
  if (model) std::cout << "checkpoint: " << a.model_dir << ", " << model->checkpoint().bytes_on_disk()
                       << " bytes in " << model->checkpoint().files().size() << " file(s), all "
                       << model->checkpoint().tensors().size() << " tensors validated\n";
  return 0;
}

}  // namespace

void add_info(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* sub = app.add_subcommand("info", "parameters, bytes, layer kinds and KV-cache sizes");
  sub->add_option("-m,--model", args->model_dir, "checkpoint directory");
  sub->add_option("--config", args->config, "a config.json alone (no weights)");
  sub->add_option("--ctx", args->ctx, "context length for the KV-cache sizes");
  sub->add_option("--ranks", args->ranks, "model-parallel ranks: weight and KV bytes per rank");
  sub->add_flag("--json", args->json, "print one JSON object");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
