// Mixture of experts: a gate scores the routed experts (sqrtsoftplus, sigmoid or softmax, in
// float32); the first num_hash_layers layers take their experts from tid2eid[token] instead of
// the top-k. Selection may add a bias that never enters the weights. Each expert is a SwiGLU
// w2(silu(clamp(w1 x)) * clamp(w3 x)) with the routing weight applied before w2; the shared
// expert is added unweighted.
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "io/config.h"
#include "model/weights.h"

namespace dsv4 {

// The sqrtsoftplus gate score, softplus as torch computes it (linear above 20); float in the
// model, double in the trainer's backward.
template <typename T>
T sqrt_softplus(T z) {
  return std::sqrt(z > T(20) ? z : std::log1p(std::exp(z)));
}

// What training's backward keeps of a forward (train/moe_backward.h; null in inference): the
// routing, and each expert's inside over its rows.
struct ExpertSaved {
  std::vector<float> xe, gate, up, act, h;  // its rows' inputs, w1 x, w3 x, SwiGLU, it times the weight
};
struct MoeSaved {
  std::vector<float> logits;               // the gate's [n, n_routed_experts]
  std::vector<std::vector<int>> chosen;    // per token, its experts (ascending)
  std::vector<std::vector<int>> rows;      // per expert, the tokens that chose it (ascending)
  std::vector<std::vector<float>> weight;  // per expert, those tokens' routing weights
  std::vector<ExpertSaved> experts;        // per routed expert (empty where no token chose it)
  std::vector<ExpertSaved> shared;         // the shared expert's, if there is one
};

// x: [n, dim] (ffn_norm output), tokens: [n] -> out: [n, dim]. Returns how many of this
// rank's routed experts ran (each once, however many rows chose it).
int moe_forward(const MoeWeights& w, bool hash, const ModelConfig& c, std::span<const float> x,
                 std::span<const int> tokens, int n, bool act_quant, std::span<float> out,
                 MoeSaved* saved = nullptr);

// Routing of one token (exposed for tests): experts (ascending) and their weights.
void moe_route(const MoeWeights& w, bool hash, const ModelConfig& c, std::span<const float> logits,
               int token, std::vector<int>& experts, std::vector<float>& weights);

}  // namespace dsv4
