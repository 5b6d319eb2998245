#include "train/indexer_backward.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dsv4 {

double indexer_kl_backward(std::span<const float> q, std::span<const float> w, int heads, std::span<const float> keys,
                           int blocks, int dim, std::span<const float> target, std::span<float> dq, std::span<float> dw,
                           std::span<float> dkeys) {
  std::vector<double> dot(static_cast<size_t>(heads) * blocks), score(blocks, 0.0);
  for (int h = 0; h < heads; ++h)
    for (int b = 0; b < blocks; ++b) {
      double s = 0;
      for (int i = 0; i < dim; ++i) s += double(q[size_t(h) * dim + i]) * keys[size_t(b) * dim + i];
      dot[size_t(h) * blocks + b] = s;
      score[b] += w[h] * std::max(s, 0.0);
    }
  const double mx = *std::max_element(score.begin(), score.end());
  double sum = 0;
  for (int b = 0; b < blocks; ++b) sum += std::exp(score[b] - mx);
  double loss = 0, mass = 0;
  for (int b = 0; b < blocks; ++b) mass += target[b];
  std::vector<double> dscore(blocks);
  for (int b = 0; b < blocks; ++b) {
    const double log_q = score[b] - mx - std::log(sum);
    if (target[b] > 0) loss += target[b] * (std::log(target[b]) - log_q);
    dscore[b] = std::exp(log_q) * mass - target[b];  // d KL / d I_b (mass = 1 for a distribution)
  }
  std::fill(dq.begin(), dq.end(), 0.0f);
  for (int h = 0; h < heads; ++h) {
    double dwh = 0;
    for (int b = 0; b < blocks; ++b) {
      const double s = dot[size_t(h) * blocks + b];
      dwh += dscore[b] * std::max(s, 0.0);
      if (s <= 0) continue;  // relu passes no gradient
      const double g = dscore[b] * w[h];
      for (int i = 0; i < dim; ++i) {
        dq[size_t(h) * dim + i] += static_cast<float>(g * keys[size_t(b) * dim + i]);
        dkeys[size_t(b) * dim + i] += static_cast<float>(g * q[size_t(h) * dim + i]);
      }
    }
    dw[h] = static_cast<float>(dwh);
  }
  return loss;
}

}  // namespace dsv4
