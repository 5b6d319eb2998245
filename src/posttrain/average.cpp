#include "posttrain/average.h"

#include "core/check.h"
#include "core/path_weight.h"
#include "posttrain/model_dir.h"
#include "train/train_state.h"

namespace dsv4 {

namespace {

// Into out (already model 0's values): the shares' weighted sum of the same tensor in every model.
void mix_into(std::vector<float>& out, const std::vector<const std::vector<float>*>& in,
              const std::vector<double>& shares, const std::string& name) {
  for (size_t m = 0; m < in.size(); ++m)
    DSV4_CHECK(in[m]->size() == out.size(), name, ": model ", m, " has ", in[m]->size(), " values, model 0 has ",
               out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    double v = 0;
    for (size_t m = 0; m < in.size(); ++m) v += shares[m] * (*in[m])[i];
    out[i] = static_cast<float>(v);
  }
}

// Every gradient parameter of w, in visiting order.
std::vector<const std::vector<float>*> params_of(const TrainWeights& w) {
  std::vector<const std::vector<float>*> out;
  for_each_param(w, [&](const std::string&, const std::vector<float>& v) { out.push_back(&v); });
  return out;
}

std::vector<const BlockF32*> blocks_of(const TrainWeights& w) {
  std::vector<const BlockF32*> out;
  for_each_block(w, [&](const std::string&, const BlockF32& b) { out.push_back(&b); });
  return out;
}

}  // namespace

TrainWeights average_weights(const std::vector<const TrainWeights*>& models, const std::vector<double>& shares) {
  DSV4_CHECK(!models.empty() && models.size() == shares.size(), "averaging needs one share per model, got ",
             models.size(), " models and ", shares.size(), " shares");
  TrainWeights out = *models[0];
  std::vector<std::vector<const std::vector<float>*>> params;
  std::vector<std::vector<const BlockF32*>> blocks;
  for (const TrainWeights* m : models) params.push_back(params_of(*m)), blocks.push_back(blocks_of(*m));
  for (size_t m = 1; m < models.size(); ++m)
    DSV4_CHECK(params[m].size() == params[0].size() && blocks[m].size() == blocks[0].size(), "model ", m,
               " has ", blocks[m].size(), " blocks and ", params[m].size(), " tensors, model 0 has ",
               blocks[0].size(), " and ", params[0].size());

  size_t p = 0;
  for_each_param(out, [&](const std::string& name, std::vector<float>& v) {
    std::vector<const std::vector<float>*> in;
    for (const auto& list : params) in.push_back(list[p]);
    mix_into(v, in, shares, name);
    ++p;
  });
  size_t b = 0;
  for_each_block(out, [&](const std::string& prefix, BlockF32& block) {
    std::vector<const std::vector<float>*> bias;
    for (size_t m = 0; m < models.size(); ++m) {
      const MoeRouting& r = blocks[m][b]->routing;
      DSV4_CHECK(r.tid2eid == block.routing.tid2eid, prefix, ": model ", m,
                 "'s hash routing (tid2eid) differs from model 0's; only models fine-tuned from one base average");
      bias.push_back(&r.bias);
    }
    mix_into(block.routing.bias, bias, shares, prefix + ".ffn.gate.bias");
    ++b;
  });
  return out;
}

void average_model_dirs(const std::vector<std::string>& specs, const std::string& out_dir) {
  DSV4_CHECK(specs.size() >= 2, "averaging needs at least two models, got ", specs.size());
  std::vector<ModelDir> dirs;
  std::vector<double> shares;
  double total = 0;
  for (const std::string& spec : specs) {
    const auto [dir, share] = split_path_weight(spec);
    DSV4_CHECK(share > 0, spec, ": the share after ':' must be positive");
    dirs.push_back(ModelDir::load(dir));
    if (dirs.size() > 1) check_same_model(dirs[0], dirs.back(), dir);
    shares.push_back(share), total += share;
  }
  std::vector<const TrainWeights*> models;
  for (double& s : shares) s /= total;
  for (const ModelDir& d : dirs) models.push_back(&d.w);
  const TrainWeights avg = average_weights(models, shares);
  write_model_dir(out_dir, dirs[0].c, dirs[0].config_json, dirs[0].tokenizer_json, avg);
}

}  // namespace dsv4
