// A model directory as the post-training stages use it: config, tokenizer and float weights.
#pragma once

#include <string>

#include "io/config.h"
#include "train/train_weights.h"

namespace dsv4 {

struct ModelDir {
  std::string config_json, tokenizer_json;
  ModelConfig c;
  TrainWeights w;
  // Its float state when it has one, else its checkpoint dequantized; `from` says which.
  static ModelDir load(const std::string& dir, std::string* from = nullptr);
};

// Models that train, score or average together need one architecture and one tokenizer; throws
// Error naming `dir` (other's directory) when other differs from model.
void check_same_model(const ModelDir& model, const ModelDir& other, const std::string& dir);

}  // namespace dsv4
