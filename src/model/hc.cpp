// mHC, following the reference's hc_pre / hc_split_sinkhorn / hc_post / hc_head.
#include "model/hc.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "ops/norm.h"

namespace dsv4 {

namespace {

float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// mixes[t][m] = (fn[m] . x_t) / sqrt(mean(x_t^2) + eps). Each dot product is summed in input
// order, one rounded multiply and one rounded add per element like the plain scalar loop (the
// faithful goldens are sensitive to this order: a blocked SIMD order flips an FP8 rounding of
// golden tiny-long); the rows of a block are the vector lanes, so the loop still vectorizes,
// and (token, block) pairs are split across threads.
std::vector<float> hc_mixes(const HcParams& p, std::span<const float> x, int n, int flat, int n_mix,
                            float norm_eps) {
  constexpr int B = HcParams::kHcMixBlock;
  const int n_blocks = (n_mix + B - 1) / B;
  std::vector<float> padded(static_cast<size_t>(n) * n_blocks * B);
  pool().parallel_for(static_cast<size_t>(n) * n_blocks, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const size_t t = i / n_blocks, b = i % n_blocks;
      const float* xt = x.data() + t * flat;
      const float* f = p.fn_blocks.data() + b * flat * B;
      // Eight partial sums per output (k mod 8), added in a fixed tree: one chain over all of
      // hc * dim products was bound by the adds' latency (15 us a block at dim 4096, now ~3).
      constexpr int S = 8;
      float acc[S][B] = {};
      int k = 0;
      for (; k + S <= flat; k += S)
        for (int j = 0; j < S; ++j)
          for (int m = 0; m < B; ++m) acc[j][m] += f[static_cast<size_t>(k + j) * B + m] * xt[k + j];
      for (; k < flat; ++k)
        for (int m = 0; m < B; ++m) acc[0][m] += f[static_cast<size_t>(k) * B + m] * xt[k];
      for (int m = 0; m < B; ++m)
        padded[i * B + m] = ((acc[0][m] + acc[1][m]) + (acc[2][m] + acc[3][m])) +
                            ((acc[4][m] + acc[5][m]) + (acc[6][m] + acc[7][m]));
    }
  });
  std::vector<float> mixes(static_cast<size_t>(n) * n_mix);
  for (int t = 0; t < n; ++t) {
    const float rsqrt = 1.0f / std::sqrt(mean_square(x.data() + static_cast<size_t>(t) * flat, flat) + norm_eps);
    for (int m = 0; m < n_mix; ++m)
      mixes[static_cast<size_t>(t) * n_mix + m] = padded[static_cast<size_t>(t) * n_blocks * B + m] * rsqrt;
  }
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
  pool().parallel_for(n, [&](size_t t0, size_t t1) {
    std::vector<float> res(static_cast<size_t>(hc) * dim);
    for (size_t t = t0; t < t1; ++t) {
      const float* r = residual.data() + t * hc * dim;
      std::copy(r, r + res.size(), res.begin());  // new_residual may alias residual
      const float* post = mix.post.data() + t * hc;
      const float* comb = mix.comb.data() + t * hc * hc;
      const float* o = out.data() + t * dim;
      float* dst = new_residual.data() + t * hc * dim;
      for (int j = 0; j < hc; ++j)
        for (int d = 0; d < dim; ++d) {
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
  std::vector<float> pre(hc);
  for (int t = 0; t < n; ++t) {
    const float* xt = x.data() + static_cast<size_t>(t) * flat;
    for (int i = 0; i < hc; ++i) pre[i] = sigmoid(mixes[static_cast<size_t>(t) * hc + i] * p.scale[0] + p.base[i]) + hc_eps;
    weighted_sum(pre.data(), xt, hc, dim, y.data() + static_cast<size_t>(t) * dim);
  }
}

}  // namespace dsv4
