// Weight averaging of models fine-tuned from one base (a "model soup"): every float weight the
// share-weighted mean of the models' values. Experts that stayed close to their common base
// can keep part of each one's skill when averaged, a student to distill into that starts
// nearer every expert than the base does. (The default model's experts moved too far: their
// average keeps neither skill; README, post-training.)
#pragma once

#include <string>
#include <vector>

#include "train/train_weights.h"

namespace dsv4 {

// sum_i shares[i] * models[i] per weight (shares need not sum to 1; the caller normalizes).
// The routing biases are averaged too; the hash layers' tid2eid must agree (a token's expert
// is not a quantity to average). Throws Error naming the first tensor whose shape differs.
TrainWeights average_weights(const std::vector<const TrainWeights*>& models, const std::vector<double>& shares);

// Averages model directories (each "DIR" or "DIR:SHARE", shares normalized to sum 1) into
// out_dir, a model directory with its float state. They must share config.json and tokenizer.
void average_model_dirs(const std::vector<std::string>& specs, const std::string& out_dir);

}  // namespace dsv4
