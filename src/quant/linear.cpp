// Scalar reference of the quantized linear. Per output element it follows the original
// kernels: partial dot products over one scale block of unscaled values, then multiplied by
// the block's scales and accumulated (fp8: 128-wide blocks, scale sa*sb; fp4: 32-wide weight
// blocks inside 128-wide activation blocks, (dot*sa)*sb).
#include "quant/linear.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/cpu.h"
#include "core/scratch.h"
#include "core/thread_pool.h"
#include "ops/gemm_f32.h"
#include "quant/act_quant.h"
#include "quant/formats.h"
#include "quant/linear_kernels.h"
#include "quant/linear_profile.h"

namespace dsv4 {

namespace {

// Unscaled weight values of one row (e4m3 / e2m1 decoded, or the float weights).
void raw_row(const Linear& w, int row, float* dst) {
  const size_t in = static_cast<size_t>(w.in);
  switch (w.format) {
    case WeightFormat::fp8: {
      const uint8_t* p = w.weight + row * in;
      for (size_t k = 0; k < in; ++k) dst[k] = e4m3_to_f32(p[k]);
      break;
    }
    case WeightFormat::fp4: {
      const uint8_t* p = w.weight + row * (in / 2);
      for (size_t k = 0; k < in / 2; ++k) {
        dst[2 * k] = e2m1_to_f32(p[k] & 15);
        dst[2 * k + 1] = e2m1_to_f32(p[k] >> 4);
      }
      break;
    }
    case WeightFormat::bf16: {
      const uint8_t* p = w.weight + row * in * 2;
      for (size_t k = 0; k < in; ++k) {
        uint16_t v;
        std::memcpy(&v, p + 2 * k, 2);
        dst[k] = bf16_to_f32(v);
      }
      break;
    }
    case WeightFormat::f32: std::memcpy(dst, w.weight + row * in * 4, in * 4); break;
  }
}

}  // namespace

void Linear::dequant_row(int row, float* dst) const {
  raw_row(*this, row, dst);
  if (format == WeightFormat::fp8 || format == WeightFormat::fp4)
    for (int k = 0; k < in; ++k) dst[k] *= scale_at(row, k);
}

LinearPath linear_path() {
  // The process-wide choice of core/cpu.h (DSV4_NO_AVX2=1 validates the scalar path).
  static const LinearPath p = !use_avx2_fma() || !linear_avx2_supported() ? LinearPath::scalar
                              : use_avx512() && linear_avx512_supported()  ? LinearPath::avx512_bf16
                                                                           : LinearPath::avx2;
  return p;
}

bool linear_path_available(LinearPath p) {
  switch (p) {
    case LinearPath::scalar: return true;
    case LinearPath::avx2: return linear_avx2_supported();
    case LinearPath::avx512_bf16: return linear_avx2_supported() && linear_avx512_supported();
  }
  return false;
}

void linear(const Linear& w, std::span<const float> x, int n, std::span<float> y,
            bool quantize_input, int row_begin, int rows) {
  if (!linear_profile_on()) return linear_with(linear_path(), w, x, n, y, quantize_input, row_begin, rows);
  const auto t0 = std::chrono::steady_clock::now();
  linear_with(linear_path(), w, x, n, y, quantize_input, row_begin, rows);
  linear_profile_record(w, quantize_input, n, rows < 0 ? w.out - row_begin : rows,
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

void linear_with(LinearPath path, const Linear& w, std::span<const float> x, int n, std::span<float> y,
                 bool quantize_input, int row_begin, int rows) {
  if (rows < 0) rows = w.out - row_begin;
  DSV4_CHECK(row_begin >= 0 && row_begin + rows <= w.out, "linear: rows out of range");
  DSV4_CHECK(x.size() == static_cast<size_t>(n) * w.in && y.size() == static_cast<size_t>(n) * rows,
             "linear: x or y has the wrong size for [", n, ", ", w.in, "] -> [", n, ", ", rows, "]");
  if (w.transposed) {
    DSV4_CHECK(w.format == WeightFormat::f32, "linear: a transposed copy of non-float weights");
    // Columns [row_begin, row_begin + rows) of W^T; the scalar path is the std::fma reference.
    const GemmPath gp = path == LinearPath::scalar ? GemmPath::scalar : gemm_f32_path();
    gemm_f32_with(gp, n, rows, w.in, x.data(), w.in, 1, w.transposed + row_begin, w.out, y.data(), rows);
    return;
  }
  const bool quantized = w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4;
  const int in = w.in;
  const int n_act_blocks = in / 128;

  // Activations: unscaled values xq and one scale per 128 (1 when not quantized).
  const std::span<float> sa = scratch<float>(Scratch::linear_scales, static_cast<size_t>(n) * (quantized ? n_act_blocks : 0));
  std::fill(sa.begin(), sa.end(), 1.0f);
  std::span<const float> xq = x;
  if (quantized && quantize_input) {
    DSV4_CHECK(in % 128 == 0, "linear: input width ", in, " is not a multiple of 128");
    const std::span<float> q = scratch<float>(Scratch::linear_inputs, x.size());
    const auto quantize = [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t)
        fp8_quantize(x.subspan(t * in, in), 128, q.subspan(t * in, in), sa.subspan(t * n_act_blocks, n_act_blocks));
    };
    // Tokens round independently; a prefill's worth is worth spreading over the threads.
    if (n > 1) pool().parallel_for(static_cast<size_t>(n), quantize);
    else quantize(0, static_cast<size_t>(n));
    xq = q;
  }

  if (path == LinearPath::avx512_bf16 && linear_avx512_handles(w, quantized && quantize_input)) {
    linear_avx512(w, xq.data(), sa.data(), n_act_blocks, n, row_begin, rows, y.data());
    return;
  }
  if (path == LinearPath::avx512_bf16 && linear_avx512_f32_handles(w, quantized && quantize_input)) {
    linear_avx512_f32(w, xq.data(), n, row_begin, rows, y.data());
    return;
  }
  if ((path == LinearPath::avx2 || path == LinearPath::avx512_bf16) && linear_avx2_handles(w)) {
    linear_avx2(w, xq.data(), sa.data(), n_act_blocks, quantized && quantize_input, n, row_begin, rows, y.data());
    return;
  }
  pool().parallel_for(static_cast<size_t>(rows), [&](size_t r0, size_t r1) {
    std::vector<float> wrow(in);
    std::vector<float> sb(in / 32 + 1);
    for (size_t r = r0; r < r1; ++r) {
      const int row = row_begin + static_cast<int>(r);
      raw_row(w, row, wrow.data());
      if (!quantized) {
        for (int t = 0; t < n; ++t) {
          const float* xt = xq.data() + static_cast<size_t>(t) * in;
          float acc = 0;
          for (int k = 0; k < in; ++k) acc += xt[k] * wrow[k];
          y[static_cast<size_t>(t) * rows + r] = acc;
        }
        continue;
      }
      const bool fp4 = w.format == WeightFormat::fp4;
      const int wblock = fp4 ? 32 : 128;
      const int n_wblocks = (in + wblock - 1) / wblock;
      for (int b = 0; b < n_wblocks; ++b) sb[b] = w.scale_at(row, b * wblock);
      for (int t = 0; t < n; ++t) {
        const float* xt = xq.data() + static_cast<size_t>(t) * in;
        const float* st = sa.data() + static_cast<size_t>(t) * n_act_blocks;
        float acc = 0;
        for (int b = 0; b < n_wblocks; ++b) {
          const int k0 = b * wblock, k1 = std::min(in, k0 + wblock);
          float part = 0;
          for (int k = k0; k < k1; ++k) part += xt[k] * wrow[k];
          const float s_act = quantize_input ? st[k0 / 128] : 1.0f;
          acc += fp4 ? (part * s_act) * sb[b] : part * (s_act * sb[b]);
        }
        y[static_cast<size_t>(t) * rows + r] = acc;
      }
    }
  });
}

}  // namespace dsv4
