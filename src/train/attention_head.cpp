#include "train/attention_head.h"

#include <algorithm>
#include <cmath>

#include <immintrin.h>

#include "core/cpu.h"
#include "ops/dot.h"
#include "ops/rope.h"

namespace dsv4 {

namespace {

// dk[i] += a * q[i] + b * d[i] for the whole groups of 8 (each a rounded product, then the
// two rounded sums in that order: the plain loop's bits, which the generic build runs 4 wide);
// returns where the plain loop goes on.
DSV4_AVX2 int add_scaled_pair_avx2(float* dk, float a, const float* q, float b, const float* d, int n) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(va, _mm256_loadu_ps(q + i)), _mm256_mul_ps(vb, _mm256_loadu_ps(d + i)));
    _mm256_storeu_ps(dk + i, _mm256_add_ps(_mm256_loadu_ps(dk + i), t));
  }
  return i;
}

std::vector<const float*> rows_of(std::span<const float> keys, int n_keys, int dim) {
  std::vector<const float*> rows(n_keys);
  for (int j = 0; j < n_keys; ++j) rows[j] = keys.data() + size_t(j) * dim;
  return rows;
}

}  // namespace

double attention_probs(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                       float sink, std::vector<double>& p) {
  std::vector<float> dots(n_keys);
  dot_rows(q.data(), 1, rows_of(keys, n_keys, dim).data(), n_keys, dim, dots.data());
  p.resize(n_keys);
  double mx = sink;
  for (int j = 0; j < n_keys; ++j) mx = std::max(mx, p[j] = double(scale) * dots[j]);
  double sum = std::exp(sink - mx);
  for (int j = 0; j < n_keys; ++j) sum += (p[j] = std::exp(p[j] - mx));
  for (double& v : p) v /= sum;
  return std::exp(sink - mx) / sum;
}

float attention_head_backward(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                              float sink, const Rope& rope, long long pos, std::span<const float> dout,
                              std::span<float> dq, std::span<float> dkeys, std::vector<double>& p) {
  // Before the inverse rotation: do = R(pos) dout on the rope dims.
  std::vector<float> d(dout.begin(), dout.end()), dp(n_keys);
  rope.apply(d.data() + dim - rope.dim(), pos, /*inverse=*/false);
  const double p_sink = attention_probs(q, keys, n_keys, dim, scale, sink, p);
  const std::vector<const float*> rows = rows_of(keys, n_keys, dim);
  dot_rows(d.data(), 1, rows.data(), n_keys, dim, dp.data());
  double pdp = 0;  // sum_j p_j dp_j (the sink carries no value: its dp is 0)
  for (int j = 0; j < n_keys; ++j) pdp += p[j] * dp[j];
  std::vector<float> dz(n_keys);  // scale * dL/dz_j
  for (int j = 0; j < n_keys; ++j) dz[j] = static_cast<float>(scale * p[j] * (dp[j] - pdp));
  weighted_rows(dz.data(), 1, rows.data(), n_keys, dim, dq.data());
  const bool simd = use_avx2_fma();
  for (int j = 0; j < n_keys; ++j) {
    float* dk = dkeys.data() + size_t(j) * dim;
    const float a = dz[j], b = static_cast<float>(p[j]);
    const int done = simd ? add_scaled_pair_avx2(dk, a, q.data(), b, d.data(), dim) : 0;
    for (int i = done; i < dim; ++i) dk[i] += a * q[i] + b * d[i];
  }
  return static_cast<float>(-p_sink * pdp);
}

void rope_backward(const Rope& rope, std::span<float> dx, long long pos, bool inverse_in_forward) {
  rope.apply(dx.data(), pos, !inverse_in_forward);
}

}  // namespace dsv4
