// The fast products go through ops/gemm_f32.h; the *_reference loops accumulate in double,
// one output at a time, as the definition.
#include "train/matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/cpu.h"
#include "core/thread_pool.h"
#include "ops/gemm_f32.h"

namespace dsv4 {

namespace {

// out[c * ld + r] = in[r * cols + c] for an 8 x 8 block at (r0, c0): eight row loads, the
// standard unpack / shuffle / lane-permute network, eight column stores.
DSV4_AVX2 void transpose8x8(const float* in, size_t cols, float* out, size_t ld) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + static_cast<size_t>(i) * cols);
  for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  for (int i = 0; i < 8; i += 4)
    for (int j = 0; j < 2; ++j) {
      r[i + j] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + j + 2] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(3, 2, 3, 2));
    }
  // r holds, per 128-bit lane, columns (0, 2, 1, 3) of rows 0-3 (r[0..3]) and rows 4-7 (r[4..7]).
  constexpr int kColumn[4] = {0, 2, 1, 3};
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(out + static_cast<size_t>(kColumn[i]) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(out + static_cast<size_t>(kColumn[i] + 4) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

}  // namespace

void transpose_to(const float* in, size_t in_ld, int rows, int cols, float* out, size_t out_ld) {
  constexpr int kTile = 32;
  const bool simd = use_avx2_fma();
  for (int r0 = 0; r0 < rows; r0 += kTile)
    for (int c0 = 0; c0 < cols; c0 += kTile) {
      const int r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      int r8 = r0, c8 = c0;  // the tile's part in whole 8 x 8 blocks
      if (simd) {
        r8 = r0 + (r1 - r0) / 8 * 8, c8 = c0 + (c1 - c0) / 8 * 8;
        for (int r = r0; r < r8; r += 8)
          for (int c = c0; c < c8; c += 8) transpose8x8(&in[r * in_ld + c], in_ld, &out[c * out_ld + r], out_ld);
      }
      // The rest, plainly: columns right of the blocks for the blocks' rows, then the rows below.
      for (int c = c8; c < c1; ++c)
        for (int r = r0; r < r8; ++r) out[c * out_ld + r] = in[r * in_ld + c];
      for (int c = c0; c < c1; ++c)
        for (int r = r8; r < r1; ++r) out[c * out_ld + r] = in[r * in_ld + c];
    }
}

std::vector<float> transposed(std::span<const float> in, int rows, int cols, int ld) {
  DSV4_CHECK(in.size() == size_t(rows) * cols && ld >= rows, "transposed: [", rows, ", ", cols, "] into rows of ",
             ld);
  std::vector<float> out(size_t(cols) * ld);
  transpose_to(in.data(), cols, rows, cols, out.data(), ld);
  return out;  // the padding stays as the vector started: zeros
}

void add_to(std::span<float> dst, std::span<const float> src) {
  DSV4_CHECK(dst.size() == src.size(), "add_to: sizes ", dst.size(), " and ", src.size(), " differ");
  // Over the threads when long (a step's activations: 1M floats); each element's add is the same.
  constexpr size_t kSerial = size_t{1} << 15;
  if (dst.size() < kSerial) {
    for (size_t i = 0; i < dst.size(); ++i) dst[i] += src[i];
    return;
  }
  pool().parallel_for(dst.size(), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) dst[i] += src[i];
  });
}

void matmul_nt(std::span<const float> a, std::span<const float> b, int m, int p, int k, std::span<float> c) {
  DSV4_CHECK(a.size() == size_t(m) * k && b.size() == size_t(p) * k && c.size() == size_t(m) * p,
             "matmul_nt: sizes do not match [", m, ", ", k, "] x [", p, ", ", k, "]^T");
  if (m == 0 || p == 0) return;
  const std::vector<float> bt = transposed(b, p, k, p);
  gemm_f32(m, p, k, a.data(), k, 1, bt.data(), p, c.data(), p);
}

void gram_nt(std::span<const float> a, int m, int k, std::span<float> c) {
  DSV4_CHECK(a.size() == size_t(m) * k && c.size() == size_t(m) * m, "gram_nt: sizes do not match [", m, ", ", k,
             "] x its transpose");
  if (m == 0) return;
  // Column panels as wide as gemm_f32's tiles (gemm_f32_panel_cols): the panel's rows of A,
  // transposed into [k][w], are B for every row of A down to the panel's last, so that C's
  // upper triangle (and the lower half of the diagonal blocks) is computed once and B is one
  // contiguous panel, which gemm_f32 reads as it is (A^T read in place has its rows m floats
  // apart, in a few cache sets).
  const int kPanel = gemm_f32_panel_cols(gemm_f32_path());
  thread_local std::vector<float> panel;
  for (int j0 = 0; j0 < m; j0 += kPanel) {
    const int w = std::min(kPanel, m - j0);
    panel.resize(size_t(k) * w);
    transpose_to(a.data() + size_t(j0) * k, k, w, k, panel.data(), w);
    gemm_f32(j0 + w, w, k, a.data(), k, 1, panel.data(), w, c.data() + j0, m);
  }
  // Below the diagonal blocks, from above, a block at a time: each element is one chain of the
  // same products.
  for (int i0 = kPanel; i0 < m; i0 += kPanel)
    for (int j0 = 0; j0 < i0; j0 += kPanel)
      transpose_to(c.data() + size_t(j0) * m + i0, m, kPanel, std::min(kPanel, m - i0), c.data() + size_t(i0) * m + j0,
                   m);
}

void linear_forward(std::span<const float> x, std::span<const float> w, int n, int in, int out, std::span<float> y) {
  DSV4_CHECK(x.size() == size_t(n) * in && w.size() == size_t(out) * in && y.size() == size_t(n) * out,
             "linear_forward: sizes do not match [", n, ", ", in, "] x [", out, ", ", in, "]");
  matmul_nt(x, w, n, out, in, y);
}

void linear_backward(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n, int in,
                     int out, std::span<float> dx, std::span<float> dw, bool add_dx) {
  DSV4_CHECK(x.size() == size_t(n) * in && w.size() == size_t(out) * in && dy.size() == size_t(n) * out &&
                 dx.size() == x.size() && dw.size() == w.size(),
             "linear_backward: sizes do not match");
  if (n == 0) return;
  // dx = dy . w (or dx += it), w as it is; dw += dy^T . x, dy read transposed through its strides.
  gemm_f32(n, in, out, dy.data(), out, 1, w.data(), in, dx.data(), in, add_dx);
  gemm_f32(out, in, n, dy.data(), 1, out, x.data(), in, dw.data(), in, /*accumulate=*/true);
}

void linear_forward_reference(std::span<const float> x, std::span<const float> w, int n, int in, int out,
                              std::span<float> y) {
  DSV4_CHECK(x.size() == size_t(n) * in && w.size() == size_t(out) * in && y.size() == size_t(n) * out,
             "linear_forward: sizes do not match [", n, ", ", in, "] x [", out, ", ", in, "]");
  for (int t = 0; t < n; ++t)
    for (int o = 0; o < out; ++o) {
      double acc = 0;
      for (int k = 0; k < in; ++k) acc += double(x[size_t(t) * in + k]) * w[size_t(o) * in + k];
      y[size_t(t) * out + o] = static_cast<float>(acc);
    }
}

void linear_backward_reference(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n,
                               int in, int out, std::span<float> dx, std::span<float> dw) {
  DSV4_CHECK(dy.size() == size_t(n) * out && dx.size() == x.size() && dw.size() == w.size(),
             "linear_backward: sizes do not match");
  for (int t = 0; t < n; ++t)
    for (int k = 0; k < in; ++k) {
      double acc = 0;
      for (int o = 0; o < out; ++o) acc += double(dy[size_t(t) * out + o]) * w[size_t(o) * in + k];
      dx[size_t(t) * in + k] = static_cast<float>(acc);
    }
  for (int o = 0; o < out; ++o)
    for (int k = 0; k < in; ++k) {
      double acc = 0;
      for (int t = 0; t < n; ++t) acc += double(dy[size_t(t) * out + o]) * x[size_t(t) * in + k];
      dw[size_t(o) * in + k] += static_cast<float>(acc);
    }
}

}  // namespace dsv4
