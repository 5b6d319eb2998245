// The forward is recomputed in double with every intermediate kept, then walked backwards.
#include "train/hc_backward.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <immintrin.h>

#include "core/check.h"
#include "core/cpu.h"
#include "core/sigmoid.h"
#include "core/thread_pool.h"
#include "model/hc.h"
#include "train/matmul.h"
#include "train/row_chunks.h"

namespace dsv4 {

namespace {

// y[j][k] = x[j][k] / (sum over the normalized axis + eps); rows: over k, else over j. x and y
// are [hc, hc] row-major and apart.
void normalize(const double* x, double* y, int hc, bool rows, double eps) {
  for (int a = 0; a < hc; ++a) {
    double sum = 0;
    for (int b = 0; b < hc; ++b) sum += rows ? x[a * hc + b] : x[b * hc + a];
    for (int b = 0; b < hc; ++b) {
      const int i = rows ? a * hc + b : b * hc + a;
      y[i] = x[i] / (sum + eps);
    }
  }
}

// dx of normalize, in place (d holds dy, then dx): with S = sum + eps, y_i = x_i / S:
// dx_i = dy_i / S - sum_l dy_l x_l / S^2. Each normalized row (or column) reads only its own.
void normalize_backward(const double* x, double* d, int hc, bool rows, double eps) {
  for (int a = 0; a < hc; ++a) {
    double sum = 0, dot = 0;
    for (int b = 0; b < hc; ++b) {
      const int i = rows ? a * hc + b : b * hc + a;
      sum += x[i];
      dot += d[i] * x[i];
    }
    const double s = sum + eps;
    for (int b = 0; b < hc; ++b) {
      const int i = rows ? a * hc + b : b * hc + a;
      d[i] = d[i] / s - dot / (s * s);
    }
  }
}

}  // namespace

HcSplitGrads hc_split_sinkhorn_backward(std::span<const float> mixes, const HcParams& p, int hc, int iters, float eps,
                                        std::span<const float> dpre, std::span<const float> dpost,
                                        std::span<const float> dcomb) {
  const int n_mix = (2 + hc) * hc;
  DSV4_CHECK(static_cast<int>(mixes.size()) == n_mix && dpre.size() == size_t(hc) && dpost.size() == size_t(hc) &&
                 dcomb.size() == size_t(hc) * hc && iters >= 1,
             "hc_split_sinkhorn_backward: sizes do not match hc ", hc);
  const float* s = p.scale.data();
  const float* b = p.base.data();
  HcSplitGrads g;
  g.mixes.assign(n_mix, 0.0f);
  g.base.assign(n_mix, 0.0f);
  double dscale[3] = {0, 0, 0};
  // pre = sigmoid(z) + eps, post = 2 sigmoid(z): dz = d * sigmoid' (* 2).
  for (int j = 0; j < hc; ++j) {
    const double sg = sigmoid(mixes[j] * double(s[0]) + b[j]);
    const double dz = dpre[j] * sg * (1 - sg);
    g.mixes[j] = static_cast<float>(dz * s[0]);
    dscale[0] += dz * mixes[j];
    g.base[j] = static_cast<float>(dz);
  }
  for (int j = 0; j < hc; ++j) {
    const int m = hc + j;
    const double sg = sigmoid(mixes[m] * double(s[1]) + b[m]);
    const double dz = dpost[j] * 2 * sg * (1 - sg);
    g.mixes[m] = static_cast<float>(dz * s[1]);
    dscale[1] += dz * mixes[m];
    g.base[m] = static_cast<float>(dz);
  }
  // comb: z -> row softmax (+ eps) -> column normalize -> (row, column) x (iters - 1). The
  // input of every normalization is kept, in one buffer (this runs per token and per mHC:
  // a vector per state cost more than the arithmetic): state k is normalized by rows when k
  // is odd, by columns when even.
  const int hh = hc * hc, n_states = 2 * iters - 1;
  std::vector<double> z(hh), soft(hh), states(size_t(n_states) * hh), d(dcomb.begin(), dcomb.end());
  for (int i = 0; i < hh; ++i) z[i] = mixes[2 * hc + i] * double(s[2]) + b[2 * hc + i];
  for (int j = 0; j < hc; ++j) {
    double mx = z[j * hc];
    for (int k = 1; k < hc; ++k) mx = std::max(mx, z[j * hc + k]);
    double sum = 0;
    for (int k = 0; k < hc; ++k) sum += std::exp(z[j * hc + k] - mx);
    for (int k = 0; k < hc; ++k) soft[j * hc + k] = std::exp(z[j * hc + k] - mx) / sum;
  }
  for (int i = 0; i < hh; ++i) states[i] = soft[i] + eps;
  for (int k = 0; k + 1 < n_states; ++k)
    normalize(&states[size_t(k) * hh], &states[size_t(k + 1) * hh], hc, k % 2 == 1, eps);
  for (int k = n_states; k-- > 0;) normalize_backward(&states[size_t(k) * hh], d.data(), hc, k % 2 == 1, eps);
  // Through the row softmax: dz = soft * (d - sum(d * soft)).
  for (int j = 0; j < hc; ++j) {
    double dot = 0;
    for (int k = 0; k < hc; ++k) dot += d[j * hc + k] * soft[j * hc + k];
    for (int k = 0; k < hc; ++k) {
      const int i = j * hc + k, m = 2 * hc + i;
      const double dz = soft[i] * (d[i] - dot);
      g.mixes[m] = static_cast<float>(dz * s[2]);
      dscale[2] += dz * mixes[m];
      g.base[m] = static_cast<float>(dz);
    }
  }
  for (int k = 0; k < 3; ++k) g.scale[k] = static_cast<float>(dscale[k]);
  return g;
}

void hc_pre_backward(std::span<const float> fn, const HcParams& p, std::span<const float> x, int hc, int dim,
                     float norm_eps, int iters, float hc_eps, std::span<const float> dy, std::span<const float> dpost,
                     std::span<const float> dcomb, std::span<float> dx, std::span<float> dfn, std::span<float> dbase,
                     std::span<float> dscale) {
  const int flat = hc * dim, n_mix = (2 + hc) * hc;
  DSV4_CHECK(fn.size() == size_t(n_mix) * flat && x.size() == size_t(flat) && dx.size() == x.size() &&
                 dfn.size() == fn.size(),
             "hc_pre_backward: sizes do not match hc ", hc, ", dim ", dim);
  // Forward: raw mixes, the norm factor r, the split.
  double ms = 0;
  for (float v : x) ms += double(v) * v;
  const double r = 1.0 / std::sqrt(ms / flat + norm_eps);
  std::vector<double> raw(n_mix, 0.0);
  std::vector<float> mixes(n_mix);
  for (int m = 0; m < n_mix; ++m) {
    for (int k = 0; k < flat; ++k) raw[m] += double(fn[size_t(m) * flat + k]) * x[k];
    mixes[m] = static_cast<float>(raw[m] * r);
  }
  std::vector<float> pre(hc), post(hc), comb(size_t(hc) * hc);
  hc_split_sinkhorn(mixes, p, hc, iters, hc_eps, pre.data(), post.data(), comb.data());
  // y = sum_i pre_i x_i.
  std::vector<float> dpre(hc);
  for (int i = 0; i < hc; ++i) {
    double acc = 0;
    for (int d = 0; d < dim; ++d) acc += double(dy[d]) * x[size_t(i) * dim + d];
    dpre[i] = static_cast<float>(acc);
    for (int d = 0; d < dim; ++d) dx[size_t(i) * dim + d] = pre[i] * dy[d];
  }
  const HcSplitGrads g = hc_split_sinkhorn_backward(mixes, p, hc, iters, hc_eps, dpre, dpost, dcomb);
  for (int m = 0; m < n_mix; ++m) dbase[m] += g.base[m];
  for (int k = 0; k < 3; ++k) dscale[k] += g.scale[k];
  // mixes = raw * r: through raw to fn and x, through r = (mean(x^2) + eps)^-1/2 to x.
  double dr = 0;
  for (int m = 0; m < n_mix; ++m) dr += double(g.mixes[m]) * raw[m];
  for (int k = 0; k < flat; ++k) {
    double acc = -dr * r * r * r * x[k] / flat;
    for (int m = 0; m < n_mix; ++m) {
      const double draw = double(g.mixes[m]) * r;
      acc += draw * fn[size_t(m) * flat + k];
      dfn[size_t(m) * flat + k] += static_cast<float>(draw * x[k]);
    }
    dx[k] += static_cast<float>(acc);
  }
}

void hc_pre_backward_batch(std::span<const float> fn, const HcParams& p, std::span<const float> x, int n, int hc,
                           int dim, float norm_eps, int iters, float hc_eps, std::span<const float> dy,
                           std::span<const float> dpost, std::span<const float> dcomb, std::span<float> dx,
                           std::span<float> dfn, std::span<float> dbase, std::span<float> dscale) {
  const int flat = hc * dim, n_mix = (2 + hc) * hc;
  DSV4_CHECK(fn.size() == size_t(n_mix) * flat && x.size() == size_t(n) * flat && dx.size() == x.size() &&
                 dfn.size() == fn.size() && dy.size() == size_t(n) * dim,
             "hc_pre_backward_batch: sizes do not match n ", n, ", hc ", hc, ", dim ", dim);
  std::vector<float> raw(size_t(n) * n_mix), draw(raw.size());
  matmul_nt(x, fn, n, n_mix, flat, raw);
  // Tokens in fixed chunks, each with its own base and scale sums, added in chunk order.
  constexpr size_t kChunk = 64;
  const size_t chunks = row_chunk_count(n, kChunk);
  std::vector<std::vector<double>> part_base(chunks, std::vector<double>(n_mix, 0.0)), part_scale(chunks, std::vector<double>(3, 0.0));
  for_row_chunks(n, kChunk, [&](size_t k, size_t t0, size_t t1) {
    std::vector<float> mixes(n_mix), pre(hc), post(hc), comb(size_t(hc) * hc), dpre(hc);
    for (size_t t = t0; t < t1; ++t) {
      const float* xt = x.data() + t * flat;
      const float* dyt = dy.data() + t * dim;
      float* dxt = dx.data() + t * flat;
      double ms = 0;
      for (int i = 0; i < flat; ++i) ms += double(xt[i]) * xt[i];
      const double r = 1.0 / std::sqrt(ms / flat + norm_eps);
      for (int m = 0; m < n_mix; ++m) mixes[m] = static_cast<float>(raw[t * n_mix + m] * r);
      hc_split_sinkhorn(mixes, p, hc, iters, hc_eps, pre.data(), post.data(), comb.data());
      for (int i = 0; i < hc; ++i) {
        double acc = 0;
        for (int d = 0; d < dim; ++d) acc += double(dyt[d]) * xt[size_t(i) * dim + d];
        dpre[i] = static_cast<float>(acc);
        for (int d = 0; d < dim; ++d) dxt[size_t(i) * dim + d] = pre[i] * dyt[d];
      }
      const HcSplitGrads g = hc_split_sinkhorn_backward(mixes, p, hc, iters, hc_eps, dpre, dpost.subspan(t * hc, hc),
                                                        dcomb.subspan(t * hc * hc, size_t(hc) * hc));
      double dr = 0;
      for (int m = 0; m < n_mix; ++m) {
        part_base[k][m] += g.base[m];
        draw[t * n_mix + m] = static_cast<float>(g.mixes[m] * r);
        dr += double(g.mixes[m]) * raw[t * n_mix + m];
      }
      for (int j = 0; j < 3; ++j) part_scale[k][j] += g.scale[j];
      // mixes = raw * r, r = (mean(x^2) + eps)^-1/2: the part through r.
      for (int i = 0; i < flat; ++i) dxt[i] += static_cast<float>(-dr * r * r * r * xt[i] / flat);
    }
  });
  for (size_t k = 0; k < chunks; ++k) {
    for (int m = 0; m < n_mix; ++m) dbase[m] += static_cast<float>(part_base[k][m]);
    for (int j = 0; j < 3; ++j) dscale[j] += static_cast<float>(part_scale[k][j]);
  }
  // The part through raw = x . fn^T: a linear layer's backward.
  linear_backward(x, fn, draw, n, flat, n_mix, dx, dfn, /*add_dx=*/true);
}

void hc_head_backward(std::span<const float> fn, const HcParams& p, std::span<const float> x, int hc, int dim,
                      float norm_eps, float hc_eps, std::span<const float> dy, std::span<float> dx, std::span<float> dfn,
                      std::span<float> dbase, std::span<float> dscale) {
  const int flat = hc * dim;
  DSV4_CHECK(fn.size() == size_t(hc) * flat && x.size() == size_t(flat) && dx.size() == x.size() &&
                 dfn.size() == fn.size() && dy.size() == size_t(dim),
             "hc_head_backward: sizes do not match hc ", hc, ", dim ", dim);
  double ms = 0;
  for (float v : x) ms += double(v) * v;
  const double r = 1.0 / std::sqrt(ms / flat + norm_eps);
  std::vector<double> raw(hc, 0.0), dmix(hc);
  double dr = 0;
  for (int i = 0; i < hc; ++i) {
    for (int k = 0; k < flat; ++k) raw[i] += double(fn[size_t(i) * flat + k]) * x[k];
    const double s = sigmoid(raw[i] * r * p.scale[0] + p.base[i]);
    double dpre = 0;
    for (int d = 0; d < dim; ++d) {
      dpre += double(dy[d]) * x[size_t(i) * dim + d];
      dx[size_t(i) * dim + d] = static_cast<float>((s + hc_eps) * dy[d]);
    }
    const double dz = dpre * s * (1 - s);  // z = mixes * scale + base
    dbase[i] += static_cast<float>(dz);
    dscale[0] += static_cast<float>(dz * raw[i] * r);
    dmix[i] = dz * p.scale[0];
    dr += dmix[i] * raw[i];
  }
  for (int k = 0; k < flat; ++k) {
    double acc = -dr * r * r * r * x[k] / flat;
    for (int i = 0; i < hc; ++i) {
      acc += dmix[i] * r * fn[size_t(i) * flat + k];
      dfn[size_t(i) * flat + k] += static_cast<float>(dmix[i] * r * x[k]);
    }
    dx[k] += static_cast<float>(acc);
  }
}

namespace scalar {

void hc_post_backward(std::span<const float> post, std::span<const float> comb, std::span<const float> out,
                      std::span<const float> res, int hc, int dim, std::span<const float> dnew, std::span<float> dpost,
                      std::span<float> dcomb, std::span<float> dout, std::span<float> dres) {
  // The hc + hc^2 sums over d side by side (each still in d order, so the same bits as one at
  // a time): independent chains instead of one latency-bound chain after another.
  std::vector<double> acc(size_t(hc) + size_t(hc) * hc, 0.0);
  double* acc_post = acc.data();
  double* acc_comb = acc.data() + hc;
  for (int d = 0; d < dim; ++d) {
    const double o = out[d];
    for (int j = 0; j < hc; ++j) {
      const double g = dnew[size_t(j) * dim + d];
      acc_post[j] += g * o;
      for (int i = 0; i < hc; ++i) acc_comb[i * hc + j] += g * res[size_t(i) * dim + d];
    }
  }
  for (int j = 0; j < hc; ++j) dpost[j] = static_cast<float>(acc_post[j]);
  for (int i = 0; i < hc * hc; ++i) dcomb[i] = static_cast<float>(acc_comb[i]);
  for (int d = 0; d < dim; ++d) {
    double acc = 0;
    for (int j = 0; j < hc; ++j) acc += double(post[j]) * dnew[size_t(j) * dim + d];
    dout[d] = static_cast<float>(acc);
  }
  for (int i = 0; i < hc; ++i)
    for (int d = 0; d < dim; ++d) {
      double acc = 0;
      for (int j = 0; j < hc; ++j) acc += double(comb[i * hc + j]) * dnew[size_t(j) * dim + d];
      dres[size_t(i) * dim + d] = static_cast<float>(acc);
    }
}

}  // namespace scalar

namespace avx2 {

// y[d] = sum_j w[j] dnew[j][d] over hc = 4 rows of dim, j in order, four d a vector.
DSV4_AVX2 void mix_rows(const float* w, const float* dnew, int dim, float* y) {
  int d = 0;
  for (; d + 4 <= dim; d += 4) {
    __m256d acc = _mm256_setzero_pd();
    for (int j = 0; j < 4; ++j)
      acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_set1_pd(w[j]), _mm256_cvtps_pd(_mm_loadu_ps(dnew + size_t(j) * dim + d))));
    _mm_storeu_ps(y + d, _mm256_cvtpd_ps(acc));
  }
  for (; d < dim; ++d) {
    double acc = 0;
    for (int j = 0; j < 4; ++j) acc += double(w[j]) * dnew[size_t(j) * dim + d];
    y[d] = static_cast<float>(acc);
  }
}

// scalar::hc_post_backward for hc = 4, the sums' lanes over j (the gradient sums) or over four
// d (the outputs'): every sum the same products in the same order, each a rounded double
// multiply then a rounded add, so the same bits; 4 doubles a vector where the generic build
// runs 2.
DSV4_AVX2 void hc_post_backward(const float* post, const float* comb, const float* out, const float* res, int dim,
                                const float* dnew, float* dpost, float* dcomb, float* dout, float* dres) {
  constexpr int hc = 4;
  const int dim4 = dim / 4 * 4;
  __m256d acc_post = _mm256_setzero_pd(), acc_comb[hc];  // lanes j; acc_comb[i] lane j is (i, j)
  for (__m256d& a : acc_comb) a = _mm256_setzero_pd();
  for (int d = 0; d < dim4; d += 4) {
    // dnew's four rows at d .. d + 3, transposed: g[e] lane j is dnew[j][d + e].
    __m128 g0 = _mm_loadu_ps(dnew + d), g1 = _mm_loadu_ps(dnew + dim + d), g2 = _mm_loadu_ps(dnew + 2 * dim + d),
           g3 = _mm_loadu_ps(dnew + 3 * dim + d);
    _MM_TRANSPOSE4_PS(g0, g1, g2, g3);
    const __m128 gs[4] = {g0, g1, g2, g3};
    for (int e = 0; e < 4; ++e) {
      const __m256d g = _mm256_cvtps_pd(gs[e]);
      acc_post = _mm256_add_pd(acc_post, _mm256_mul_pd(g, _mm256_set1_pd(out[d + e])));
      for (int i = 0; i < hc; ++i)
        acc_comb[i] = _mm256_add_pd(acc_comb[i], _mm256_mul_pd(g, _mm256_set1_pd(res[size_t(i) * dim + d + e])));
    }
  }
  double ap[hc], ac[hc * hc];
  _mm256_storeu_pd(ap, acc_post);
  for (int i = 0; i < hc; ++i) _mm256_storeu_pd(ac + i * hc, acc_comb[i]);
  for (int d = dim4; d < dim; ++d)  // the sums go on in d order
    for (int j = 0; j < hc; ++j) {
      const double g = dnew[size_t(j) * dim + d];
      ap[j] += g * double(out[d]);
      for (int i = 0; i < hc; ++i) ac[i * hc + j] += g * res[size_t(i) * dim + d];
    }
  for (int j = 0; j < hc; ++j) dpost[j] = static_cast<float>(ap[j]);
  for (int i = 0; i < hc * hc; ++i) dcomb[i] = static_cast<float>(ac[i]);
  // dout and dres: lanes over d, each output's sum over j in order.
  mix_rows(post, dnew, dim, dout);
  for (int i = 0; i < hc; ++i) mix_rows(comb + i * hc, dnew, dim, dres + size_t(i) * dim);
}

}  // namespace avx2

void hc_post_backward(std::span<const float> post, std::span<const float> comb, std::span<const float> out,
                      std::span<const float> res, int hc, int dim, std::span<const float> dnew, std::span<float> dpost,
                      std::span<float> dcomb, std::span<float> dout, std::span<float> dres) {
  if (hc == 4 && use_avx2_fma())
    return avx2::hc_post_backward(post.data(), comb.data(), out.data(), res.data(), dim, dnew.data(), dpost.data(),
                                  dcomb.data(), dout.data(), dres.data());
  scalar::hc_post_backward(post, comb, out, res, hc, dim, dnew, dpost, dcomb, dout, dres);
}

}  // namespace dsv4
