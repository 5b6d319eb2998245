// Linear layers y = x W^T over the checkpoint's weight formats, and the one function every
// matrix product of the model goes through (so SIMD kernels can replace its body later).
//
//   fp8: weight e4m3 [out, in], one scale per 128x128 block  [ceil(out/128), ceil(in/128)]
//   fp4: weight e2m1 packed [out, in/2] (low nibble = even index), scale per 1x32 [out, in/32]
//   f32 / bf16: plain weights, no scales, never quantized inputs.
// Scales are ue8m0 bytes or F32. For fp8 / fp4 weights the input is quantized per 128 to e4m3
// first (quantize_input = true), as the original fp8_gemm / fp4_gemm; with false the input is
// used as is (the smooth validation mode, and wo_a which the reference applies dequantized).
//
// Every output element is computed by one thread in a fixed order, and a row's result does not
// depend on the other rows in the call: prefill, decode and batches agree bit for bit.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

#include "io/safetensors.h"
#include "quant/formats.h"

namespace dsv4 {

enum class WeightFormat { fp8, fp4, bf16, f32 };

struct Linear {
  WeightFormat format = WeightFormat::f32;
  int out = 0, in = 0;                  // logical shape [out, in]
  const uint8_t* weight = nullptr;      // mmap'd checkpoint bytes
  const uint8_t* scale = nullptr;       // fp8 / fp4 only
  bool scale_f32 = false;               // scale dtype F32 instead of ue8m0
  // f32 only, optional: the same weights transposed, [in, out] row-major. Given, the product
  // is ops/gemm_f32.h's (one fused multiply-add chain per output, the same bits on every path):
  // the trainer's float masters, viewed this way (train/master_views.h), run the inference ops.
  const float* transposed = nullptr;

  // The scale applying to weight element (row, col); inline: kernels read it per 32 weights.
  float scale_at(int row, int col) const {
    size_t i;
    if (format == WeightFormat::fp8) i = static_cast<size_t>(row / 128) * ((in + 127) / 128) + col / 128;
    else if (format == WeightFormat::fp4) i = static_cast<size_t>(row) * (in / 32) + col / 32;
    else return 1.0f;
    if (!scale_f32) return ue8m0_to_f32(scale[i]);
    float s;
    std::memcpy(&s, scale + 4 * i, 4);
    return s;
  }
  void dequant_row(int row, float* dst) const;  // dst [in], exact dequantized values
};

// y[n, rows] = x[n, in] . W[row_begin : row_begin + rows]^T ; rows = -1 means all.
// Runs the fastest path this CPU has (the same one for the whole process).
void linear(const Linear& w, std::span<const float> x, int n, std::span<float> y,
            bool quantize_input, int row_begin = 0, int rows = -1);

// The paths: scalar is the plain reference; avx2 (AVX2 + FMA) the production path on
// machines that have it; avx512_bf16 adds AVX512-BF16 for FP8 / FP4 weights with quantized
// inputs (everything else goes the avx2 way). Tests and benchmarks call a path explicitly.
enum class LinearPath { scalar, avx2, avx512_bf16 };
LinearPath linear_path();
bool linear_path_available(LinearPath p);  // this CPU can run it
void linear_with(LinearPath path, const Linear& w, std::span<const float> x, int n, std::span<float> y,
                 bool quantize_input, int row_begin = 0, int rows = -1);

}  // namespace dsv4
