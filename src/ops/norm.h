// RMSNorm: y = weight * x / sqrt(mean(x^2) + eps), in float32 (the reference's RMSNorm).
#pragma once

#include <span>

namespace dsv4 {

// x, y: [n, d]; weight: [d] or empty (no weight: the per-head q normalisation).
void rmsnorm(std::span<const float> x, std::span<const float> weight, float eps, int d,
             std::span<float> y);

}  // namespace dsv4
