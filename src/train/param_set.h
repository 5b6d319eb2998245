// The gradient parameters of a model being trained, each with its optimizer state, split as
// DeepSeek-V4 splits them (train_weights.h: uses_muon): one object steps them all.
#pragma once

#include <string>
#include <vector>

#include "io/config.h"
#include "train/adamw.h"
#include "train/muon.h"
#include "train/train_weights.h"

namespace dsv4 {

struct Param {
  std::string name;
  std::vector<long long> shape;
  std::vector<float>* w = nullptr;
  std::vector<float>* g = nullptr;
  bool muon = false;     // else AdamW
  bool decay = false;    // weight decay (matrices)
  bool indexer = false;  // a lightning indexer's (trained by its own loss)
  AdamWState adam;
  MuonState muon_state;
};

class ParamSet {
 public:
  // optimizer: "muon" (Muon for hidden matrices, AdamW for the rest) or "adamw" (AdamW for all).
  // w and g must outlive the set.
  ParamSet(const ModelConfig& c, TrainWeights& w, TrainWeights& g, const std::string& optimizer, float weight_decay);

  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  void zero_grads();
  // The indexers' KL loss gradients arrive summed over tokens (train_model.h): per token, like
  // the main loss, before clipping mixes them with the rest.
  void scale_indexer_grads(double tokens);
  // Clips the global gradient norm to grad_clip, then updates every parameter; returns the
  // norm before clipping.
  double step(float lr, float grad_clip);

 private:
  void update(Param& p, float lr) const;  // its optimizer's step on one parameter

  std::vector<Param> params_;
  float weight_decay_;
};

}  // namespace dsv4
