// RMSNorm in training: its forward and the backward, in float32 on rows of width dim, checked
// against central finite differences of the forward (tests/test_train.cpp).
#pragma once

#include <span>

namespace dsv4 {

// y = x / sqrt(mean(x^2) + eps) * weight, per row of width dim (weight may be empty: no scale).
void rmsnorm_forward(std::span<const float> x, std::span<const float> weight, float eps, int dim, std::span<float> y);

// dx overwritten; dweight accumulated (when weight is not empty).
void rmsnorm_backward(std::span<const float> x, std::span<const float> weight, float eps, int dim,
                      std::span<const float> dy, std::span<float> dx, std::span<float> dweight);

}  // namespace dsv4
