// RMSNorm: y = weight * x / sqrt(mean(x^2) + eps), in float32 (the reference's RMSNorm).
#pragma once

#include <span>

namespace dsv4 {

// mean(x^2) over x [n], summed in double and rounded once (see norm.cpp for why).
float mean_square(const float* x, int n);

// x, y: [n, d]; weight: [d] or empty (no weight: the per-head q normalisation).
void rmsnorm(std::span<const float> x, std::span<const float> weight, float eps, int d,
             std::span<float> y);

}  // namespace dsv4
