// Mixture of experts: a gate scores the routed experts (sqrtsoftplus, sigmoid or softmax, in
// float32); the first num_hash_layers layers take their experts from tid2eid[token] instead of
// the top-k. Selection may add a bias that never enters the weights. Each expert is a SwiGLU
// w2(silu(clamp(w1 x)) * clamp(w3 x)) with the routing weight applied before w2; the shared
// expert is added unweighted.
#pragma once

#include <cmath>
#include <span>

#include "io/config.h"
#include "model/weights.h"

namespace dsv4 {

// The sqrtsoftplus gate score, softplus as torch computes it (linear above 20); float in the
// model, double in the trainer's backward.
template <typename T>
T sqrt_softplus(T z) {
  return std::sqrt(z > T(20) ? z : std::log1p(std::exp(z)));
}

// x: [n, dim] (ffn_norm output), tokens: [n] -> out: [n, dim]. Returns how many of this
// rank's routed experts ran (each once, however many rows chose it).
int moe_forward(const MoeWeights& w, bool hash, const ModelConfig& c, std::span<const float> x,
                 std::span<const int> tokens, int n, bool act_quant, std::span<float> out);

// Routing of one token (exposed for tests): experts (ascending) and their weights.
void moe_route(const MoeWeights& w, bool hash, const ModelConfig& c, std::span<const float> logits,
               int token, std::vector<int>& experts, std::vector<float>& weights);

}  // namespace dsv4
