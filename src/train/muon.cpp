// Newton-Schulz's matrix products go through gemm_f32 and gram_nt: it runs on every hidden
// matrix at every step, a third of a step on the default model before its Gram products took
// half the work.
#include "train/muon.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/cpu.h"
#include "ops/gemm_f32.h"
#include "train/matmul.h"

namespace dsv4 {

namespace {

// out[i] = ka * a[i] + kb * b[i] (out may be a or b), each a rounded multiply then a rounded add:
// the AVX2 loop and the plain one give the same bits (-ffp-contract=off keeps them apart, and a
// factor of 1 is exact).
DSV4_AVX2 void combine_avx2(float ka, const float* a, float kb, const float* b, float* out, size_t n) {
  const __m256 va = _mm256_set1_ps(ka), vb = _mm256_set1_ps(kb);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(va, _mm256_loadu_ps(a + i)),
                                            _mm256_mul_ps(vb, _mm256_loadu_ps(b + i))));
  for (; i < n; ++i) out[i] = ka * a[i] + kb * b[i];
}

void combine(float ka, std::span<const float> a, float kb, std::span<const float> b, std::span<float> out) {
  if (use_avx2_fma()) return combine_avx2(ka, a.data(), kb, b.data(), out.data(), out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = ka * a[i] + kb * b[i];
}

}  // namespace

std::vector<float> newton_schulz(std::span<const float> g, int rows, int cols, int fast, int stable) {
  DSV4_CHECK(g.size() == static_cast<size_t>(rows) * cols, "newton_schulz: size does not match the shape");
  // Work on the wide orientation (r <= c) so that X X^T is the small Gram matrix.
  const bool tall = rows > cols;
  std::vector<float> x = tall ? transposed(g, rows, cols, rows) : std::vector<float>(g.begin(), g.end());
  const int r = tall ? cols : rows, c = tall ? rows : cols;
  double norm = 0;
  for (float v : x) norm += double(v) * v;
  norm = std::sqrt(norm) + 1e-7;  // ||X||_2 <= ||X||_F, so every singular value starts <= 1
  for (float& v : x) v = static_cast<float>(v / norm);
  // One thread runs a matrix's iterations while the other runs another's: at the default
  // model's 128 x 256 the buffers (with gemm_f32's packed copy of X) just fill a core's
  // second-level cache, so B takes A^2's place. They stay with the thread for its next matrix
  // (fresh ones cost page faults).
  thread_local std::vector<float> a, b, bx;
  a.resize(static_cast<size_t>(r) * r), b.resize(a.size()), bx.resize(x.size());
  for (int it = 0; it < fast + stable; ++it) {
    const bool f = it < fast;
    const float ka = f ? 3.4445f : 2.0f, kb = f ? -4.7750f : -1.5f, kc = f ? 2.0315f : 0.5f;
    gram_nt(x, r, c, a);  // A = X X^T
    gram_nt(a, r, r, b);  // A^2 = A A^T (A is symmetric)
    combine(kb, a, kc, b, b);                                        // B = kb A + kc A^2
    gemm_f32(r, c, r, b.data(), r, 1, x.data(), c, bx.data(), c);  // B X
    combine(ka, x, 1.0f, bx, x);                                     // X = ka X + B X
  }
  return tall ? transposed(x, r, c, r) : x;
}

void muon_step(std::span<float> w, int rows, int cols, std::span<const float> g, MuonState& s, const MuonParams& p,
               float lr) {
  DSV4_CHECK(w.size() == g.size() && w.size() == static_cast<size_t>(rows) * cols, "muon_step: [", rows, ", ", cols,
             "] does not match ", w.size(), " weights and ", g.size(), " gradients");
  if (s.momentum.empty()) s.momentum.assign(w.size(), 0.0f);
  std::vector<float> u(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    s.momentum[i] = p.momentum * s.momentum[i] + g[i];
    u[i] = p.nesterov ? g[i] + p.momentum * s.momentum[i] : s.momentum[i];
  }
  const std::vector<float> o = newton_schulz(u, rows, cols, p.ns_fast, p.ns_stable);
  // An orthogonal [rows, cols] matrix has RMS 1 / sqrt(max(rows, cols)).
  const double scale = p.update_rms * std::sqrt(static_cast<double>(std::max(rows, cols)));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(w[i] - lr * (scale * o[i] + p.weight_decay * w[i]));
}

}  // namespace dsv4
