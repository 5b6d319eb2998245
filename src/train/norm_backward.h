// RMSNorm's backward. Its forward is the inference one (ops/norm.h's rmsnorm), so training and
// inference normalise alike; the backward is checked against central finite differences of it
// (tests/test_train.cpp).
#pragma once

#include <span>

namespace dsv4 {

// y = weight * x / sqrt(mean(x^2) + eps) per row of width dim (weight may be empty: no scale):
// dx overwritten; dweight accumulated (when weight is not empty).
void rmsnorm_backward(std::span<const float> x, std::span<const float> weight, float eps, int dim,
                      std::span<const float> dy, std::span<float> dx, std::span<float> dweight);

}  // namespace dsv4
