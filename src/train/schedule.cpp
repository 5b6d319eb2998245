#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace dsv4 {

float lr_at(long long step, long long warmup, long long total, float peak, float final_fraction) {
  if (step < warmup) return peak * static_cast<float>(step + 1) / static_cast<float>(warmup);
  if (step >= total) return peak * final_fraction;
  const double t = static_cast<double>(step - warmup) / std::max(1LL, total - warmup);
  return static_cast<float>(peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + std::cos(M_PI * t))));
}

double clip_grad_norm(std::span<const std::span<float>> grads, double max_norm) {
  double sq = 0;
  for (const auto& g : grads)
    for (float v : g) sq += double(v) * v;
  const double norm = std::sqrt(sq);
  if (norm > max_norm && norm > 0) {
    const float f = static_cast<float>(max_norm / norm);
    for (const auto& g : grads)
      for (float& v : g) v *= f;
  }
  return norm;
}

}  // namespace dsv4
