// RMSNorm, scalar.
#include "ops/norm.h"

#include <cmath>

#include "core/check.h"

namespace dsv4 {

void rmsnorm(std::span<const float> x, std::span<const float> weight, float eps, int d,
             std::span<float> y) {
  DSV4_CHECK(x.size() % d == 0 && y.size() == x.size() && (weight.empty() || (int)weight.size() == d),
             "rmsnorm: bad shapes");
  for (size_t r = 0; r < x.size() / d; ++r) {
    const float* xr = x.data() + r * d;
    float* yr = y.data() + r * d;
    float ss = 0;
    for (int i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / d + eps);
    for (int i = 0; i < d; ++i) yr[i] = weight.empty() ? xr[i] * inv : weight[i] * (xr[i] * inv);
  }
}

}  // namespace dsv4
