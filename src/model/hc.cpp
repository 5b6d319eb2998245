// mHC, following the reference's hc_pre / hc_split_sinkhorn / hc_post / hc_head.
#include "model/hc.h"

#include <algorithm>
#include <cmath>

// GCC 12 warns inside its own AVX-512 headers (maybe-uninitialized in the casts).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "core/cpu.h"
#include "core/sigmoid.h"
#include "core/thread_pool.h"
#include "ops/norm.h"

namespace dsv4 {

namespace {

constexpr int B = HcParams::kHcMixBlock;
constexpr int S = 8;  // partial sums per output, over k mod 8

// The loop of hc_mixes below over whole groups of S inputs, 16 lanes at a time (lane 4 j + m
// holds acc[j][m]), each a rounded multiply then a rounded add as there: the same bits, about
// 4x faster than the 4-wide loop the compiler makes of it for a generic x86-64 (a batched
// decode step's hc_pre took 3% of it). Returns the first input it left.
__attribute__((target("avx512f,avx2"))) int mix_dots_avx512(const float* f, const float* xt, int k0, int k1,
                                                            float (&acc)[S][B]) {
  static_assert(S == 8 && B == 4, "two vectors of 4 x 4 lanes");
  __m512 lo = _mm512_loadu_ps(&acc[0][0]), hi = _mm512_loadu_ps(&acc[4][0]);
  const __m512i of_lo = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i of_hi = _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
  int k = k0;
  for (; k + S <= k1; k += S) {
    const __m512 xv = _mm512_castps256_ps512(_mm256_loadu_ps(xt + k));
    const float* fk = f + static_cast<size_t>(k) * B;
    lo = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_loadu_ps(fk), _mm512_permutexvar_ps(of_lo, xv)));
    hi = _mm512_add_ps(hi, _mm512_mul_ps(_mm512_loadu_ps(fk + 16), _mm512_permutexvar_ps(of_hi, xv)));
  }
  _mm512_storeu_ps(&acc[0][0], lo);
  _mm512_storeu_ps(&acc[4][0], hi);
  return k;
}

// The same with AVX2, 8 lanes at a time (lane 4 j + m of vector v holds acc[2 v + j][m]).
DSV4_AVX2 int mix_dots_avx2(const float* f, const float* xt, int k0, int k1, float (&acc)[S][B]) {
  static_assert(S == 8 && B == 4, "four vectors of 2 x 4 lanes");
  __m256 v[4];
  __m256i spread[4];  // x's element per lane: 2 v + (lane / 4)
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(&acc[2 * i][0]);
    spread[i] = _mm256_setr_epi32(2 * i, 2 * i, 2 * i, 2 * i, 2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1);
  }
  int k = k0;
  for (; k + S <= k1; k += S) {
    const __m256 xv = _mm256_loadu_ps(xt + k);
    const float* fk = f + static_cast<size_t>(k) * B;
    for (int i = 0; i < 4; ++i)
      v[i] = _mm256_add_ps(v[i], _mm256_mul_ps(_mm256_loadu_ps(fk + 8 * i), _mm256_permutevar8x32_ps(xv, spread[i])));
  }
  for (int i = 0; i < 4; ++i) _mm256_storeu_ps(&acc[2 * i][0], v[i]);
  return k;
}

// hc_post's mix for one token, 8 of dim at a time: each output's products added in i order from
// zero, then post * out added, as the plain loop does (the same bits). Returns the first d left.
DSV4_AVX2 int post_mix_avx2(const float* post, const float* comb, const float* res, const float* o, int hc, int dim,
                            float* dst) {
  int d0 = 0;
  for (; d0 + 8 <= dim; d0 += 8)
    for (int j = 0; j < hc; ++j) {
      __m256 acc = _mm256_setzero_ps();
      for (int i = 0; i < hc; ++i)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(comb[i * hc + j]),
                                               _mm256_loadu_ps(res + static_cast<size_t>(i) * dim + d0)));
      _mm256_storeu_ps(dst + static_cast<size_t>(j) * dim + d0,
                       _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(post[j]), _mm256_loadu_ps(o + d0)), acc));
    }
  return d0;
}

// mixes[t][m] = (fn[m] . x_t) / sqrt(mean(x_t^2) + eps). Each dot product is summed in input
// order, one rounded multiply and one rounded add per element like the plain scalar loop (the
// faithful goldens are sensitive to this order: a blocked SIMD order flips an FP8 rounding of
// golden tiny-long); the rows of a block are the vector lanes (mix_dots_avx512 or _avx2 where
// the CPU has them), and (block, group of tokens) pairs are split across threads. A group's tokens
// go through the block a chunk of inputs at a time, their sums kept in between, so a batched
// decode step reads a block (hc * dim * kHcMixBlock floats, 256 KB at V4-Flash's size) once per
// group rather than once per token; every sum takes its products in the same order.
std::vector<float> hc_mixes(const HcParams& p, std::span<const float> x, int n, int flat, int n_mix,
                            float norm_eps) {
  const bool wide = use_avx512(), simd = use_avx2_fma();
  constexpr int kGroup = 4, kChunk = 2048;  // tokens sharing a pass over a block; inputs per chunk (32 KB of it)
  const int n_blocks = (n_mix + B - 1) / B, n_groups = (n + kGroup - 1) / kGroup;
  std::vector<float> padded(static_cast<size_t>(n) * n_blocks * B);
  pool().parallel_for(static_cast<size_t>(n_groups) * n_blocks, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const int g = static_cast<int>(i / n_blocks), b = static_cast<int>(i % n_blocks);
      const int t0 = g * kGroup, t1 = std::min(n, t0 + kGroup);
      const float* f = p.fn_blocks.data() + static_cast<size_t>(b) * flat * B;
      // Eight partial sums per output, added in a fixed tree at the end: one chain over all of
      // hc * dim products was bound by the adds' latency (15 us a block at dim 4096, now ~3).
      float acc[kGroup][S][B] = {};
      for (int c0 = 0; c0 < flat; c0 += kChunk) {
        const int c1 = std::min(flat, c0 + kChunk);  // kChunk % S == 0: the k mod 8 sums stay
        for (int t = t0; t < t1; ++t) {
          const float* xt = x.data() + static_cast<size_t>(t) * flat;
          float(&a)[S][B] = acc[t - t0];
          int k = wide ? mix_dots_avx512(f, xt, c0, c1, a) : simd ? mix_dots_avx2(f, xt, c0, c1, a) : c0;
          for (; k + S <= c1; k += S)
            for (int j = 0; j < S; ++j)
              for (int m = 0; m < B; ++m) a[j][m] += f[static_cast<size_t>(k + j) * B + m] * xt[k + j];
          for (; k < c1; ++k)
            for (int m = 0; m < B; ++m) a[0][m] += f[static_cast<size_t>(k) * B + m] * xt[k];
        }
      }
      for (int t = t0; t < t1; ++t) {
        const float(&a)[S][B] = acc[t - t0];
        float* out = padded.data() + (static_cast<size_t>(t) * n_blocks + b) * B;
        for (int m = 0; m < B; ++m)
          out[m] = ((a[0][m] + a[1][m]) + (a[2][m] + a[3][m])) + ((a[4][m] + a[5][m]) + (a[6][m] + a[7][m]));
      }
    }
  });
  std::vector<float> mixes(static_cast<size_t>(n) * n_mix);
  pool().parallel_for(static_cast<size_t>(n), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const float rsqrt = 1.0f / std::sqrt(mean_square(x.data() + t * flat, flat) + norm_eps);
      for (int m = 0; m < n_mix; ++m) mixes[t * n_mix + m] = padded[t * n_blocks * B + m] * rsqrt;
    }
  });
  return mixes;
}

void weighted_sum(const float* pre, const float* x, int hc, int dim, float* y) {
  for (int d = 0; d < dim; ++d) {
    float acc = 0;
    for (int i = 0; i < hc; ++i) acc += pre[i] * x[static_cast<size_t>(i) * dim + d];
    y[d] = acc;
  }
}

}  // namespace

void hc_split_sinkhorn(std::span<const float> mixes, const HcParams& p, int hc, int iters,
                       float eps, float* pre, float* post, float* comb) {
  const float* s = p.scale.data();
  const float* b = p.base.data();
  for (int j = 0; j < hc; ++j) pre[j] = sigmoid(mixes[j] * s[0] + b[j]) + eps;
  for (int j = 0; j < hc; ++j) post[j] = 2 * sigmoid(mixes[hc + j] * s[1] + b[hc + j]);
  for (int j = 0; j < hc * hc; ++j) comb[j] = mixes[2 * hc + j] * s[2] + b[2 * hc + j];
  // Row softmax, + eps.
  for (int j = 0; j < hc; ++j) {
    float* row = comb + j * hc;
    const float mx = *std::max_element(row, row + hc);
    float sum = 0;
    for (int k = 0; k < hc; ++k) sum += (row[k] = std::exp(row[k] - mx));
    for (int k = 0; k < hc; ++k) row[k] = row[k] / sum + eps;
  }
  auto col_normalise = [&] {
    for (int k = 0; k < hc; ++k) {
      float sum = 0;
      for (int j = 0; j < hc; ++j) sum += comb[j * hc + k];
      for (int j = 0; j < hc; ++j) comb[j * hc + k] /= sum + eps;
    }
  };
  col_normalise();
  for (int it = 0; it < iters - 1; ++it) {
    for (int j = 0; j < hc; ++j) {
      float sum = 0;
      for (int k = 0; k < hc; ++k) sum += comb[j * hc + k];
      for (int k = 0; k < hc; ++k) comb[j * hc + k] /= sum + eps;
    }
    col_normalise();
  }
}

void hc_pre(const HcParams& p, std::span<const float> x, int n, int hc, int dim, float norm_eps,
            int sinkhorn_iters, float hc_eps, std::span<float> y, HcMix& mix) {
  const int flat = hc * dim, n_mix = (2 + hc) * hc;
  mix.post.assign(static_cast<size_t>(n) * hc, 0);
  mix.comb.assign(static_cast<size_t>(n) * hc * hc, 0);
  const std::vector<float> mixes = hc_mixes(p, x, n, flat, n_mix, norm_eps);
  pool().parallel_for(n, [&](size_t t0, size_t t1) {
    std::vector<float> pre(hc);
    for (size_t t = t0; t < t1; ++t) {
      const float* xt = x.data() + t * flat;
      hc_split_sinkhorn(std::span<const float>(mixes).subspan(t * n_mix, n_mix), p, hc, sinkhorn_iters, hc_eps,
                        pre.data(), mix.post.data() + t * hc, mix.comb.data() + t * hc * hc);
      weighted_sum(pre.data(), xt, hc, dim, y.data() + t * dim);
    }
  });
}

void hc_post(const HcMix& mix, std::span<const float> out, std::span<const float> residual, int n,
             int hc, int dim, std::span<float> new_residual) {
  const bool simd = use_avx2_fma();
  pool().parallel_for(n, [&](size_t t0, size_t t1) {
    std::vector<float> res(static_cast<size_t>(hc) * dim);
    for (size_t t = t0; t < t1; ++t) {
      const float* r = residual.data() + t * hc * dim;
      std::copy(r, r + res.size(), res.begin());  // new_residual may alias residual
      const float* post = mix.post.data() + t * hc;
      const float* comb = mix.comb.data() + t * hc * hc;
      const float* o = out.data() + t * dim;
      float* dst = new_residual.data() + t * hc * dim;
      const int d0 = simd ? post_mix_avx2(post, comb, res.data(), o, hc, dim, dst) : 0;
      for (int j = 0; j < hc; ++j)
        for (int d = d0; d < dim; ++d) {
          float acc = 0;
          for (int i = 0; i < hc; ++i) acc += comb[i * hc + j] * res[static_cast<size_t>(i) * dim + d];
          dst[static_cast<size_t>(j) * dim + d] = post[j] * o[d] + acc;
        }
    }
  });
}

void hc_head(const HcParams& p, std::span<const float> x, int n, int hc, int dim, float norm_eps,
             float hc_eps, std::span<float> y) {
  const int flat = hc * dim;
  const std::vector<float> mixes = hc_mixes(p, x, n, flat, hc, norm_eps);
  pool().parallel_for(static_cast<size_t>(n), [&](size_t t0, size_t t1) {
    std::vector<float> pre(hc);
    for (size_t t = t0; t < t1; ++t) {
      const float* xt = x.data() + t * flat;
      for (int i = 0; i < hc; ++i) pre[i] = sigmoid(mixes[t * hc + i] * p.scale[0] + p.base[i]) + hc_eps;
      weighted_sum(pre.data(), xt, hc, dim, y.data() + t * dim);
    }
  });
}

}  // namespace dsv4
