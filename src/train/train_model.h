// The whole model for training: a batch of sequences, each from position 0, through the
// embedding, the blocks (mHC around attention and MoE), hc_head, the head and the
// cross-entropy loss, plus the MTP layer's loss on the token after next; and the backward
// through all of it. The forward keeps
// each block's inside (its tape) for the backward, which frees it once walked back through.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "io/config.h"
#include "ops/rope.h"
#include "train/train_weights.h"

namespace dsv4 {

struct TrainRopes {
  Rope plain, yarn;  // window-only layers, compressed layers (YaRN), as model.cpp chooses
  explicit TrainRopes(const ModelConfig& c);
  const Rope& of(int ratio) const { return ratio ? yarn : plain; }
};

struct SequenceLoss {
  double main = 0, mtp = 0;  // mean cross-entropy of the counted targets
  int main_targets = 0, mtp_targets = 0;
};

struct BatchLoss {
  std::vector<SequenceLoss> seqs;
  double index = 0;  // the indexers' KL loss, summed over all tokens and CSA layers
};

// One sequence of a batch: inputs [n] at positions 0 .. n - 1 and targets [n] (targets[t]:
// the token after inputs[t], or -1 to not count it; the MTP layer predicts targets[t + 1] from
// position t given inputs[t + 1]).
struct BatchSequence {
  std::span<const int> inputs, targets;
};

struct SequenceOptions {
  float mtp_weight = 0.3f;  // the MTP loss enters the total with this weight
  float grad_scale = 1.0f;  // gradients of the total loss are multiplied by this (1 / batch)
  // Replaces the main cross-entropy (post-training losses): given the logits [n, vocab], fills
  // all of dlogits [n, vocab] (it starts unset) with the gradient of its loss and returns the
  // loss (SequenceLoss::main).
  std::function<double(std::span<const float> logits, std::span<float> dlogits)> head_loss;
};

// The batch's sequences (of any lengths) as the rows of one matrix. With g, the gradients of
// grad_scale * sum over the sequences of (main + mtp_weight * mtp) accumulate into g, and the
// indexers' gradients of their own loss (summed over tokens: the caller scales them); loads
// (if not null) gets per score-routed layer (by block index, MTP blocks after the main ones)
// the tokens each expert took. head_loss, when set, is called once per sequence.
BatchLoss train_batch(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                      std::span<const BatchSequence> batch, const SequenceOptions& o, TrainWeights* g,
                      std::vector<std::vector<long long>>* loads = nullptr);

// A batch of one.
SequenceLoss train_sequence(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                            std::span<const int> inputs, std::span<const int> targets, const SequenceOptions& o,
                            TrainWeights* g, std::vector<std::vector<long long>>* loads = nullptr);

// Logits [n, vocab] at every position (the same forward; for tests and evaluation).
std::vector<float> train_logits(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                                 std::span<const int> inputs);

}  // namespace dsv4
