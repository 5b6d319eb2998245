// The inner products of attention and the indexer, over rows given by pointer (a token's keys
// come from the current chunk, the unpacked window ring and unpacked compressed entries):
//   dot_rows:      out[i, j] = a_i . b_j                             a: [na, n], out: [na, nb]
//   weighted_rows: out[i, :] = sum_j p[i, j] * b_j, j ascending       p: [na, nb], out: [na, n]
// where b is nb pointers to rows of n floats.
//
// Each output element has one reduction order per path, whatever na, nb and the caller's
// blocking of tokens, heads and keys, so a result is the same in a prefill and in a decode step
// and for any thread count:
//   scalar (the reference): a dot sums d = 0 .. n-1 in order; a weighted sum adds j = 0 ..
//     nb-1 in order; separate multiply and add.
//   AVX2: a dot keeps 8 lane sums (lane l takes d = l, l + 8, ... below n rounded down to a
//     multiple of 8, fused multiply-add), adds them as ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), then
//     fuses in the remaining d in order; a weighted sum is the scalar order with fused
//     multiply-add.
// The process uses AVX2 when use_avx2_fma() (core/cpu.h). The two paths differ by rounding only:
// tests/test_ops.cpp bounds |avx2 - scalar| per element by 2 m 2^-24 sum |terms|, m terms
// (each is within m 2^-24 sum |terms| of the exact sum).
#pragma once

#include <cstddef>

namespace dsv4 {

void dot_rows(const float* a, int na, const float* const* b, int nb, int n, float* out);
void weighted_rows(const float* p, int na, const float* const* b, int nb, int n, float* out);

namespace scalar {
void dot_rows(const float* a, int na, const float* const* b, int nb, int n, float* out);
void weighted_rows(const float* p, int na, const float* const* b, int nb, int n, float* out);
}  // namespace scalar
namespace avx2 {  // require use_avx2_fma()
void dot_rows(const float* a, int na, const float* const* b, int nb, int n, float* out);
void weighted_rows(const float* p, int na, const float* const* b, int nb, int n, float* out);
}  // namespace avx2

}  // namespace dsv4
