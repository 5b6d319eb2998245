// The fast bodies of linear() and how linear.cpp chooses among them (internal to src/quant).
#pragma once

#include "quant/linear.h"

namespace dsv4 {

bool linear_avx2_supported();                 // this CPU has AVX2, FMA and F16C
bool linear_avx2_handles(const Linear& w);    // the kernel's shape constraints
// xq: [n, in] input (already quantized to unscaled e4m3 values when quantize_input), sa:
// [n, n_act_blocks] activation scales, y: [n, rows] for weight rows [row_begin, +rows).
void linear_avx2(const Linear& w, const float* xq, const float* sa, int n_act_blocks, bool quantize_input, int n,
                 int row_begin, int rows, float* y);

bool linear_avx512_supported();  // AVX512 F / BW / VL / BF16 / VBMI and F16C
// Only FP8 / FP4 weights with quantized inputs (on the bf16 grid), in % 128 == 0.
bool linear_avx512_handles(const Linear& w, bool quantize_input);
void linear_avx512(const Linear& w, const float* xq, const float* sa, int n_act_blocks, int n, int row_begin,
                   int rows, float* y);

// Float inputs (not on the bf16 grid): FP8 weights with unquantized inputs and BF16 weights,
// in % 128 == 0; float FMAs. Same CPU requirements as linear_avx512.
bool linear_avx512_f32_handles(const Linear& w, bool quantize_input);
void linear_avx512_f32(const Linear& w, const float* x, int n, int row_begin, int rows, float* y);

}  // namespace dsv4
