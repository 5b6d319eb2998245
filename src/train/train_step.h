// One optimizer step of `dsv4 train`: the batch's sequences (a function of the seed and the
// step alone) through the training model as one batch of rows, the indexers' losses taken per
// token, clipping and the optimizers (Muon or AdamW per tensor), then the
// routing biases' auxiliary-loss-free balancing.
#pragma once

#include <memory>
#include <vector>

#include "io/config.h"
#include "train/param_set.h"
#include "train/train_data.h"
#include "train/train_model.h"
#include "train/train_settings.h"
#include "train/train_weights.h"

namespace dsv4 {

struct StepLosses {
  double loss = 0, mtp_loss = 0, index_loss = 0;  // means over the batch (index_loss per token)
  double grad_norm = 0;                           // before clipping
};

class TrainStep {
 public:
  // Trains w in place; c and w must outlive it.
  TrainStep(const ModelConfig& c, TrainWeights& w, const TrainSettings& s);

  // Step `step` (from 0) at learning rate lr on sequences sampled from sources.
  StepLosses run(const std::vector<TrainSource>& sources, long long step, float lr);

  // Every parameter with its optimizer state (what a saved run keeps).
  ParamSet& params() { return *params_; }

 private:
  const ModelConfig& c_;
  TrainWeights& w_;
  TrainSettings s_;
  TrainRopes ropes_;
  TrainWeights g_;
  std::unique_ptr<ParamSet> params_;
};

}  // namespace dsv4
