// FP4 weights (e2m1, one scale per 1x32) on AVX2: how a 128-weight block sits in registers, its
// two decoders, and the input layouts that match them. Internal to linear_avx2.cpp, which owns
// the loops; this file owns the bits.
//
// Layout. A block is 64 bytes: R0 = [32-block 0 | 32-block 1] and R1 = [2 | 3], one per 128-bit
// half. The pieces P0 = unpacklo_epi64(R0, R1) and P1 = unpackhi_epi64(R0, R1) hold, in half
// h, bytes 8q..8q+7 of 32-blocks h and 2 + h. Both decoders keep bytes 4d..4d+3 of a half in
// lane 4h + d, so every lane sums the 16 weights of ONE 32-block (lanes 0-1: block 0, 2-3:
// block 2, 4-5: block 1, 6-7: block 3) and the weight scales apply once per lane and block.
//
// Arithmetic, per (row, token, block), shared by every kernel:
//   lanes = per lane, the sum of its 16 products (a x) (2 w), a = 64 for quantized inputs
//           (e4m3 values; 1 for float inputs);
//   total = fma(lanes, scale_vector * s, total), s = the input's block scale / (2 a).
// Two ways to get `lanes`:
//   float decoder: 16 vectors of 2w (the two high bytes of the float from vpshufb tables), one
//     FMA chain per lane. On a "narrow" input block (every a x an integer of at most 15 bits,
//     as when no nonzero e4m3 value is below 2^-3) every product and partial sum is an integer
//     below 2^24: exact.
//   integer decoder (narrow blocks only): 2w + 12 as bytes (0..24), vpmaddwd against the int16
//     inputs a x, minus 12 * (the lane's sum of a x): the exact sum, converted exactly.
// So on narrow blocks both give the same bits; wide blocks always take the float decoder. The
// GEMV uses the integer decoder where it can (~45 vector instructions per block against the
// float one's ~63, and no long FMA chains), the GEMM the float one (decoded once per tile), and
// a token still gets the same bits in a prefill and in a decode step.
#pragma once

#include <immintrin.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#include "core/cpu.h"

namespace dsv4::fp4_avx2 {

inline constexpr int kWeights = 128;     // one block; its scales: 4 x 1x32
inline constexpr float kNarrow = 64.0f;  // a for quantized inputs: e4m3 values >= 2^-3 have 64 x integer

// The block weight in half h, byte j (0..15) of piece q, low (hi = 0) or high nibble.
constexpr int weight_at(int q, int h, int j, int hi) {
  return 32 * (h + 2 * (j / 8)) + 2 * (8 * q + j % 8) + hi;
}

// Float decoder: vector v (0..15), lane l holds weight kFloatOrder[8 v + l] (see decode_float).
inline constexpr std::array<uint8_t, kWeights> kFloatOrder = [] {
  std::array<uint8_t, kWeights> o{};
  for (int q = 0; q < 2; ++q)
    for (int word = 0; word < 4; ++word)  // the unpacked word vectors: low nibbles (0, 1), high (2, 3)
      for (int odd = 0; odd < 2; ++odd)
        for (int h = 0; h < 2; ++h)
          for (int d = 0; d < 4; ++d)
            o[8 * (8 * q + 2 * word + odd) + 4 * h + d] =
                static_cast<uint8_t>(weight_at(q, h, 4 * d + 2 * (word % 2) + odd, word / 2));
  return o;
}();

// Integer decoder: int16 position 64 q + 16 v + k (v: low-nibble even bytes, low-nibble odd,
// high-nibble even, high-nibble odd; k: word k of the vector) holds weight kIntOrder[..]; its
// products land in lane int_lane(k).
constexpr int int_lane(int k) { return 4 * (k / 8) + (k % 8) / 2; }
inline constexpr std::array<uint8_t, kWeights> kIntOrder = [] {
  std::array<uint8_t, kWeights> o{};
  for (int q = 0; q < 2; ++q)
    for (int v = 0; v < 4; ++v)
      for (int k = 0; k < 16; ++k)
        o[64 * q + 16 * v + k] = static_cast<uint8_t>(weight_at(q, k / 8, 2 * (k % 8) + v % 2, v / 2));
  return o;
}();

// Both orders place every weight exactly once, and each weight in the same lane.
inline constexpr bool kOrdersAgree = [] {
  int float_lane[kWeights], int_lane_of[kWeights];
  for (int& l : float_lane) l = -1;
  for (int& l : int_lane_of) l = -1;
  for (int p = 0; p < kWeights; ++p) {
    if (float_lane[kFloatOrder[p]] != -1 || int_lane_of[kIntOrder[p]] != -1) return false;
    float_lane[kFloatOrder[p]] = p % 8;
    int_lane_of[kIntOrder[p]] = int_lane(p % 16);
  }
  for (int i = 0; i < kWeights; ++i)
    if (float_lane[i] != int_lane_of[i] || float_lane[i] < 0) return false;
  return true;
}();
static_assert(kOrdersAgree, "the FP4 decoders must sum each weight in the same lane");

// e2m1 code -> 2w as a float's two high bytes (its low 16 bits are zero), and 2w + 12.
struct Tables {
  alignas(16) uint8_t high[16], low[16], biased[16];
};
inline constexpr Tables kTables = [] {
  Tables t{};
  constexpr float kTwice[8] = {0, 1, 2, 3, 4, 6, 8, 12};
  for (int c = 0; c < 16; ++c) {
    const float v = c < 8 ? kTwice[c] : -kTwice[c - 8];
    const uint32_t b = std::bit_cast<uint32_t>(v);
    t.high[c] = static_cast<uint8_t>(b >> 24);
    t.low[c] = static_cast<uint8_t>(b >> 16);
    t.biased[c] = static_cast<uint8_t>(static_cast<int>(v) + 12);
  }
  return t;
}();

DSV4_AVX2 inline __m256i table(const uint8_t (&t)[16]) {
  return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
}

// Piece q of a block.
DSV4_AVX2 inline __m256i piece(const uint8_t* block, int q) {
  const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block));
  const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32));
  return q == 0 ? _mm256_unpacklo_epi64(r0, r1) : _mm256_unpackhi_epi64(r0, r1);
}

// One piece -> 8 vectors of 2w in kFloatOrder. The byte and word interleaves below put bytes
// {2d, 2d+1, 8+2d, 9+2d} of a half into lane d; a vpshufb first moves bytes 4d..4d+3 there.
DSV4_AVX2 inline void decode_float(__m256i piece, __m256 out[8]) {
  const __m256i gather = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                          0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i b = _mm256_shuffle_epi8(piece, gather), nib = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(b, nib), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), nib);
  const __m256i th = table(kTables.high), tl = table(kTables.low);
  const __m256i lo_h = _mm256_shuffle_epi8(th, lo), lo_l = _mm256_shuffle_epi8(tl, lo);
  const __m256i hi_h = _mm256_shuffle_epi8(th, hi), hi_l = _mm256_shuffle_epi8(tl, hi);
  const __m256i words[4] = {_mm256_unpacklo_epi8(lo_l, lo_h), _mm256_unpackhi_epi8(lo_l, lo_h),
                            _mm256_unpacklo_epi8(hi_l, hi_h), _mm256_unpackhi_epi8(hi_l, hi_h)};
  const __m256i top = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int w = 0; w < 4; ++w) {
    out[2 * w] = _mm256_castsi256_ps(_mm256_slli_epi32(words[w], 16));  // the low word of each dword
    out[2 * w + 1] = _mm256_castsi256_ps(_mm256_and_si256(words[w], top));
  }
}

// One piece against its 64 int16 inputs (kIntOrder): per lane, the sum of (a x) (2w + 12).
DSV4_AVX2 inline __m256i dot_int(__m256i piece, const int16_t* x) {
  const __m256i nib = _mm256_set1_epi8(0x0F), low = _mm256_set1_epi16(0x00FF), tb = table(kTables.biased);
  const __m256i lo = _mm256_shuffle_epi8(tb, _mm256_and_si256(piece, nib));
  const __m256i hi = _mm256_shuffle_epi8(tb, _mm256_and_si256(_mm256_srli_epi16(piece, 4), nib));
  const auto* xv = reinterpret_cast<const __m256i*>(x);
  const __m256i a = _mm256_madd_epi16(_mm256_and_si256(lo, low), _mm256_loadu_si256(xv));
  const __m256i b = _mm256_madd_epi16(_mm256_srli_epi16(lo, 8), _mm256_loadu_si256(xv + 1));
  const __m256i c = _mm256_madd_epi16(_mm256_and_si256(hi, low), _mm256_loadu_si256(xv + 2));
  const __m256i d = _mm256_madd_epi16(_mm256_srli_epi16(hi, 8), _mm256_loadu_si256(xv + 3));
  return _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
}

// A block's lanes against one token's inputs: by the float decoder from a x in kFloatOrder (xf,
// 128 floats), or by the integer decoder from its codes (narrow blocks only, see to_codes).
DSV4_AVX2 inline __m256 lanes_float(const uint8_t* block, const float* xf) {
  __m256 chain = _mm256_setzero_ps();
  for (int q = 0; q < 2; ++q) {
    __m256 v[8];
    decode_float(piece(block, q), v);
    for (int j = 0; j < 8; ++j) chain = _mm256_fmadd_ps(_mm256_loadu_ps(xf + 64 * q + 8 * j), v[j], chain);
  }
  return chain;
}
DSV4_AVX2 inline __m256 lanes_int(const uint8_t* block, const int16_t* codes, const int32_t* bias) {
  const __m256i sum = _mm256_add_epi32(dot_int(piece(block, 0), codes), dot_int(piece(block, 1), codes + 64));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias))));
}

// The block's four scales spread to the lanes: ue8m0 bytes (the float with exponent bits e is
// the scale, as ue8m0_to_f32) or F32.
DSV4_AVX2 inline __m256i lane_blocks() { return _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3); }
DSV4_AVX2 inline __m256 scale_vector(const uint8_t* ue8m0) {
  int four;
  std::memcpy(&four, ue8m0, 4);
  const __m256i e = _mm256_cvtepu8_epi32(_mm_cvtsi32_si128(four));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_permutevar8x32_epi32(e, lane_blocks()), 23));
}
DSV4_AVX2 inline __m256 scale_vector_f32(const uint8_t* f32) {
  const __m128 four = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(f32)));
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(four), lane_blocks());
}

// One block of a token's inputs x (natural order) for the float decoder: a x in kFloatOrder.
inline void to_floats(const float* x, float a, float* dst) {
  for (int p = 0; p < kWeights; ++p) dst[p] = x[kFloatOrder[p]] * a;
}

// The same block for the integer decoder, if it is narrow: a x as int16 in kIntOrder and the
// lanes' 12 * sum(a x). Returns whether it is (NaN and infinities are not).
DSV4_AVX2 inline bool to_codes(const float* x, float a, int16_t* codes, int32_t* bias) {
  const __m256 va = _mm256_set1_ps(a), limit = _mm256_set1_ps(32767.0f);
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  alignas(32) int32_t ints[kWeights];
  __m256 exact = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int i = 0; i < kWeights; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), va);
    const __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    exact = _mm256_and_ps(exact, _mm256_cmp_ps(v, r, _CMP_EQ_OQ));
    exact = _mm256_and_ps(exact, _mm256_cmp_ps(_mm256_and_ps(v, magnitude), limit, _CMP_LE_OQ));
    _mm256_store_si256(reinterpret_cast<__m256i*>(ints + i), _mm256_cvtps_epi32(r));
  }
  if (_mm256_movemask_ps(exact) != 0xFF) return false;
  int32_t lane_sum[8] = {};
  for (int p = 0; p < kWeights; ++p) {
    codes[p] = static_cast<int16_t>(ints[kIntOrder[p]]);
    lane_sum[int_lane(p % 16)] += codes[p];
  }
  for (int l = 0; l < 8; ++l) bias[l] = 12 * lane_sum[l];
  return true;
}

}  // namespace dsv4::fp4_avx2
