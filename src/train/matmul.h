// The trainer's matrix products, in float32 on plain row-major arrays: every one goes through
// ops/gemm_f32.h (one fused multiply-add chain per output, the same bits on every path), and
// the dense layer's forward and backward are built on it. The plain double-accumulating
// *_reference loops are the definition the fast ones are tested against (tests/test_train.cpp).
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

// in [rows, cols] -> [cols, ld] = in^T, each row padded with zeros from rows to ld (ld >= rows).
// In square tiles, so that reads and writes both run along rows (the plain loop, writing down
// columns, was 8% of a training step).
std::vector<float> transposed(std::span<const float> in, int rows, int cols, int ld);
// out[c * out_ld + r] = in[r * in_ld + c] for r < rows, c < cols (the buffers do not overlap).
void transpose_to(const float* in, size_t in_ld, int rows, int cols, float* out, size_t out_ld);

// C [m, p] = A [m, k] . B [p, k]^T (B transposed once, then gemm_f32).
void matmul_nt(std::span<const float> a, std::span<const float> b, int m, int p, int k, std::span<float> c);

// C [m, m] = A [m, k] . A^T, bitwise what matmul_nt(a, a, m, m, k, c) gives, in a little over
// half its work: C is symmetric, and gemm_f32's chain for (i, j) multiplies the same pairs as
// the one for (j, i) (a fused multiply-add does not depend on its factors' order), so only the
// blocks on and above the diagonal are computed and the others mirrored.
void gram_nt(std::span<const float> a, int m, int k, std::span<float> c);

// dst += src, elementwise (gradients of one tensor summed over its uses), over the threads when
// long; sizes must match.
void add_to(std::span<float> dst, std::span<const float> src);

// y [n, out] = x [n, in] . w [out, in]^T
void linear_forward(std::span<const float> x, std::span<const float> w, int n, int in, int out, std::span<float> y);

// dx [n, in] = dy . w (overwritten; with add_dx, added to dx: the bits of computing it apart
// and adding, without the buffer); dw [out, in] += dy^T . x
void linear_backward(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n, int in,
                     int out, std::span<float> dx, std::span<float> dw, bool add_dx = false);

// The same as plain double-accumulating loops: the definition the fast ones are tested against.
void linear_forward_reference(std::span<const float> x, std::span<const float> w, int n, int in, int out,
                              std::span<float> y);

void linear_backward_reference(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n,
                               int in, int out, std::span<float> dx, std::span<float> dw);

}  // namespace dsv4
