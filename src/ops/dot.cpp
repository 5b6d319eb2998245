// Scalar references and AVX2 + FMA kernels of dot_rows / weighted_rows (orders in dot.h). The
// AVX2 kernels block registers over several a rows and b rows (4 x 2 dot accumulators, 4 x 2
// vectors of weighted sums) and walk the keys in tiles that stay in L1; blocking only changes
// which element is computed when, never the order of one element's sum.
#include "ops/dot.h"

#include <immintrin.h>

#include <algorithm>

#include "core/cpu.h"

namespace dsv4 {

void scalar::dot_rows(const float* a, int na, const float* const* b, int nb, int n, float* out) {
  for (int i = 0; i < na; ++i)
    for (int j = 0; j < nb; ++j) {
      const float* ai = a + static_cast<size_t>(i) * n;
      float acc = 0;
      for (int d = 0; d < n; ++d) acc += ai[d] * b[j][d];
      out[static_cast<size_t>(i) * nb + j] = acc;
    }
}

void scalar::weighted_rows(const float* p, int na, const float* const* b, int nb, int n, float* out) {
  for (int i = 0; i < na; ++i) {
    float* oi = out + static_cast<size_t>(i) * n;
    std::fill(oi, oi + n, 0.0f);
    for (int j = 0; j < nb; ++j) {
      const float pj = p[static_cast<size_t>(i) * nb + j];
      for (int d = 0; d < n; ++d) oi[d] += pj * b[j][d];
    }
  }
}

namespace {

constexpr int kKeyTile = 16;  // b rows per tile: 16 rows of 512 floats fill a 32 KiB L1

DSV4_AVX2 inline float hsum(__m256 v) {  // ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

DSV4_AVX2 inline float fma1(float x, float y, float z) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(x), _mm_set_ss(y), _mm_set_ss(z)));
}

// out[i, j] for i < MA, j < MB: a rows a + i * n, b rows b[j]; out row stride ld.
template <int MA, int MB>
DSV4_AVX2 void dot_block(const float* a, const float* const* b, int n, float* out, size_t ld) {
  __m256 acc[MA][MB];
  for (int i = 0; i < MA; ++i)
    for (int j = 0; j < MB; ++j) acc[i][j] = _mm256_setzero_ps();
  const int n8 = n & ~7;
  for (int d = 0; d < n8; d += 8) {
    __m256 bv[MB];
    for (int j = 0; j < MB; ++j) bv[j] = _mm256_loadu_ps(b[j] + d);
    for (int i = 0; i < MA; ++i) {
      const __m256 av = _mm256_loadu_ps(a + static_cast<size_t>(i) * n + d);
      for (int j = 0; j < MB; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MA; ++i)
    for (int j = 0; j < MB; ++j) {
      float r = hsum(acc[i][j]);
      for (int d = n8; d < n; ++d) r = fma1(a[static_cast<size_t>(i) * n + d], b[j][d], r);
      out[i * ld + j] = r;
    }
}

template <int MA>
DSV4_AVX2 void dot_rows_ma(const float* a, const float* const* b, int nb, int n, float* out, size_t ld) {
  int j = 0;
  for (; j + 2 <= nb; j += 2) dot_block<MA, 2>(a, b + j, n, out + j, ld);
  if (j < nb) dot_block<MA, 1>(a, b + j, n, out + j, ld);
}

// out[i, d] for i < MA over b rows [j0, j1), continuing the sums already in out unless first.
template <int MA>
DSV4_AVX2 void weighted_block(const float* p, size_t ldp, const float* const* b, int j0, int j1, int n,
                              float* out, bool first) {
  int d = 0;
  for (; d + 16 <= n; d += 16) {
    __m256 acc[MA][2];
    for (int i = 0; i < MA; ++i)
      for (int v = 0; v < 2; ++v)
        acc[i][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + i * static_cast<size_t>(n) + d + 8 * v);
    for (int j = j0; j < j1; ++j) {
      const __m256 b0 = _mm256_loadu_ps(b[j] + d), b1 = _mm256_loadu_ps(b[j] + d + 8);
      for (int i = 0; i < MA; ++i) {
        const __m256 pv = _mm256_broadcast_ss(p + i * ldp + j);
        acc[i][0] = _mm256_fmadd_ps(pv, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(pv, b1, acc[i][1]);
      }
    }
    for (int i = 0; i < MA; ++i)
      for (int v = 0; v < 2; ++v) _mm256_storeu_ps(out + i * static_cast<size_t>(n) + d + 8 * v, acc[i][v]);
  }
  for (; d + 8 <= n; d += 8) {
    __m256 acc[MA];
    for (int i = 0; i < MA; ++i)
      acc[i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + i * static_cast<size_t>(n) + d);
    for (int j = j0; j < j1; ++j) {
      const __m256 bv = _mm256_loadu_ps(b[j] + d);
      for (int i = 0; i < MA; ++i) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i * ldp + j), bv, acc[i]);
    }
    for (int i = 0; i < MA; ++i) _mm256_storeu_ps(out + i * static_cast<size_t>(n) + d, acc[i]);
  }
  for (; d < n; ++d)
    for (int i = 0; i < MA; ++i) {
      float r = first ? 0.0f : out[i * static_cast<size_t>(n) + d];
      for (int j = j0; j < j1; ++j) r = fma1(p[i * ldp + j], b[j][d], r);
      out[i * static_cast<size_t>(n) + d] = r;
    }
}

}  // namespace

DSV4_AVX2 void avx2::dot_rows(const float* a, int na, const float* const* b, int nb, int n, float* out) {
  for (int j0 = 0; j0 < nb; j0 += kKeyTile) {
    const int mb = std::min(kKeyTile, nb - j0);
    int i = 0;
    for (; i + 4 <= na; i += 4)
      dot_rows_ma<4>(a + static_cast<size_t>(i) * n, b + j0, mb, n, out + static_cast<size_t>(i) * nb + j0, nb);
    const float* ai = a + static_cast<size_t>(i) * n;
    float* oi = out + static_cast<size_t>(i) * nb + j0;
    switch (na - i) {
      case 3: dot_rows_ma<3>(ai, b + j0, mb, n, oi, nb); break;
      case 2: dot_rows_ma<2>(ai, b + j0, mb, n, oi, nb); break;
      case 1: dot_rows_ma<1>(ai, b + j0, mb, n, oi, nb); break;
      default: break;
    }
  }
}

DSV4_AVX2 void avx2::weighted_rows(const float* p, int na, const float* const* b, int nb, int n, float* out) {
  if (nb == 0) {
    std::fill(out, out + static_cast<size_t>(na) * n, 0.0f);
    return;
  }
  for (int j0 = 0; j0 < nb; j0 += kKeyTile) {
    const int j1 = std::min(nb, j0 + kKeyTile);
    int i = 0;
    for (; i + 4 <= na; i += 4)
      weighted_block<4>(p + static_cast<size_t>(i) * nb, nb, b, j0, j1, n, out + static_cast<size_t>(i) * n, j0 == 0);
    const float* pi = p + static_cast<size_t>(i) * nb;
    float* oi = out + static_cast<size_t>(i) * n;
    switch (na - i) {
      case 3: weighted_block<3>(pi, nb, b, j0, j1, n, oi, j0 == 0); break;
      case 2: weighted_block<2>(pi, nb, b, j0, j1, n, oi, j0 == 0); break;
      case 1: weighted_block<1>(pi, nb, b, j0, j1, n, oi, j0 == 0); break;
      default: break;
    }
  }
}

void dot_rows(const float* a, int na, const float* const* b, int nb, int n, float* out) {
  if (use_avx2_fma()) avx2::dot_rows(a, na, b, nb, n, out);
  else scalar::dot_rows(a, na, b, nb, n, out);
}

void weighted_rows(const float* p, int na, const float* const* b, int nb, int n, float* out) {
  if (use_avx2_fma()) avx2::weighted_rows(p, na, b, nb, n, out);
  else scalar::weighted_rows(p, na, b, nb, n, out);
}

}  // namespace dsv4
