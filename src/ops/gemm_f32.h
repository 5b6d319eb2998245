// A float32 matrix product for the trainer's float masters: C = A . B (or C += A . B), B
// row-major [k, n], A read through strides so that a transposed operand needs no copy
// (A(i, kk) = a[i * a_row + kk * a_col]). Every element of C is one chain of fused
// multiply-adds over kk = 0, 1, ..., k - 1 from zero (then added to C when accumulating): the
// same bits on every path (AVX-512, AVX2, the scalar std::fma reference), for any thread count
// and any tiling, since a tile only decides which elements are computed together.
//
// The SIMD paths hold a tile of C in registers (AVX-512: 12 rows x 32 columns, AVX2: 6 x 16)
// and per kk load one row of B's panel (copied contiguous first when the product has 8 row tiles
// or more to share it) and broadcast one A value per row: the products' outputs
// lie in the vector lanes, so no lane reduction follows (linear()'s F32 kernels, dot products
// along k, end every output in a 16-lane sum, which at the trainer's k of 128-256 cost about as
// much as the products).
#pragma once

#include <cstddef>

namespace dsv4 {

void gemm_f32(int m, int n, int k, const float* a, size_t a_row, size_t a_col, const float* b, size_t ldb, float* c,
              size_t ldc, bool accumulate = false);

// The definition: one std::fma chain per element, single-threaded.
void gemm_f32_reference(int m, int n, int k, const float* a, size_t a_row, size_t a_col, const float* b, size_t ldb,
                        float* c, size_t ldc, bool accumulate = false);

enum class GemmPath { scalar, avx2, avx512 };
GemmPath gemm_f32_path();  // the process's choice (core/cpu.h's switches)
// The width of the path's column tiles: a B of at most this many columns with ldb equal to it is
// one panel already, read as it is (the scalar path reports AVX2's).
int gemm_f32_panel_cols(GemmPath path);
void gemm_f32_with(GemmPath path, int m, int n, int k, const float* a, size_t a_row, size_t a_col, const float* b,
                   size_t ldb, float* c, size_t ldc, bool accumulate = false);

}  // namespace dsv4
