// RMSNorm, scalar.
#include "ops/norm.h"

#include <cmath>

#include "core/check.h"
#include "core/thread_pool.h"

namespace dsv4 {

float mean_square(const float* x, int n) {
  // Double, rounded once. A float running sum is a few ulps off the reference's (torch reduces
  // pairwise), enough to move a kv value across an FP8 rounding midpoint: golden tiny, MTP kv
  // at position 43 is -83.99999 vs the reference's -84.00001 after scaling, rounding to -80
  // instead of -88 and moving the MTP logits by 0.06.
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  return static_cast<float>(ss) / n;
}

void rmsnorm(std::span<const float> x, std::span<const float> weight, float eps, int d,
             std::span<float> y) {
  DSV4_CHECK(x.size() % d == 0 && y.size() == x.size() && (weight.empty() || (int)weight.size() == d),
             "rmsnorm: bad shapes");
  auto rows = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x.data() + r * d;
      float* yr = y.data() + r * d;
      const float inv = 1.0f / std::sqrt(mean_square(xr, d) + eps);
      for (int i = 0; i < d; ++i) yr[i] = weight.empty() ? xr[i] * inv : weight[i] * (xr[i] * inv);
    }
  };
  // Rows over the threads when there are many (a prefill's or a training step's); each row's
  // arithmetic is the same either way.
  const size_t n = x.size() / d;
  if (x.size() < (size_t{1} << 14)) return rows(0, n);
  pool().parallel_for(n, rows);
}

}  // namespace dsv4
