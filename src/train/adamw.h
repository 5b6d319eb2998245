// AdamW, which DeepSeek-V4 uses for what Muon does not take: the embedding, the head, and every
// vector (norms, sinks, mHC bases and scales) and the compressors' ape. Plain float loops.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

struct AdamWParams {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};
struct AdamWState {
  std::vector<float> m, v;  // first and second moments (sized on the first step)
  long long step = 0;
};
// w -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w), bias-corrected moments.
void adamw_step(std::span<float> w, std::span<const float> g, AdamWState& s, const AdamWParams& p, float lr);

}  // namespace dsv4
