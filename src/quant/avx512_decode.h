// Weight decoding for the AVX-512 kernels (internal to src/quant): FP8 / FP4 codes become bf16
// by table lookups in registers, in the lane order the lookups produce (see linear_avx512.cpp);
// the kernels put their inputs in the same order.
#pragma once
// GCC 12 warns inside its own AVX-512 headers (maybe-uninitialized in the cvt intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "quant/formats.h"
#include "quant/linear.h"

#define DSV4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vbmi,avx2,fma,f16c")))

namespace dsv4::avx512 {

using Order = std::array<uint8_t, 128>;  // position in a 128-block -> input index

// e4m3 decode: per 64 bytes, unpacklo yields lanes of bytes [16L, 16L + 8), unpackhi
// [16L + 8, 16L + 16); a 128-block is two such chunks.
constexpr Order kFp8Order = [] {
  Order o{};
  for (int p = 0; p < 128; ++p) {
    const int chunk = p / 64, q = p % 64, half = q / 32, lane = (q % 32) / 8, j = q % 8;
    o[p] = static_cast<uint8_t>(64 * chunk + 16 * lane + 8 * half + j);
  }
  return o;
}();

// e2m1 decode: byte b holds weights 2b (low nibble) and 2b + 1; pieces 0, 1 are the low
// nibbles of bytes [16L, +8) and [16L + 8, +8), pieces 2, 3 the high nibbles of the same.
constexpr Order kFp4Order = [] {
  Order o{};
  for (int p = 0; p < 128; ++p) {
    const int piece = p / 32, lane = (p % 32) / 8, j = p % 8;
    o[p] = static_cast<uint8_t>(32 * lane + 16 * (piece % 2) + 2 * j + piece / 2);
  }
  return o;
}();

struct Tables {
  alignas(64) uint8_t e4m3_lo[128], e4m3_hi[128];  // bf16 of magnitude code c (c < 128)
  alignas(64) uint8_t e2m1_lo[64], e2m1_hi[64];    // bf16 of nibble, repeated per 128-bit lane
};

inline const Tables& tables() {
  static const Tables t = [] {
    Tables t{};
    for (int c = 0; c < 128; ++c) {
      const uint32_t b = f32_to_bits(e4m3_to_f32(static_cast<uint8_t>(c))) >> 16;  // exact: 3 mantissa bits
      t.e4m3_lo[c] = static_cast<uint8_t>(b & 0xFF);
      t.e4m3_hi[c] = static_cast<uint8_t>(b >> 8);
    }
    for (int i = 0; i < 64; ++i) {
      const uint32_t b = f32_to_bits(e2m1_to_f32(static_cast<uint8_t>(i % 16))) >> 16;
      t.e2m1_lo[i] = static_cast<uint8_t>(b & 0xFF);
      t.e2m1_hi[i] = static_cast<uint8_t>(b >> 8);
    }
    return t;
  }();
  return t;
}

// The lookup tables in registers for the duration of one kernel call.
struct Decoder {
  __m512i e4m3_lo0, e4m3_lo1, e4m3_hi0, e4m3_hi1, e2m1_lo, e2m1_hi, sign, nibble;
  __m512i lane_of_scale;  // float lane l takes scale l / 4 (e2m1 lane groups)

  DSV4_AVX512 Decoder() {
    const Tables& t = tables();
    e4m3_lo0 = _mm512_load_si512(t.e4m3_lo);
    e4m3_lo1 = _mm512_load_si512(t.e4m3_lo + 64);
    e4m3_hi0 = _mm512_load_si512(t.e4m3_hi);
    e4m3_hi1 = _mm512_load_si512(t.e4m3_hi + 64);
    e2m1_lo = _mm512_load_si512(t.e2m1_lo);
    e2m1_hi = _mm512_load_si512(t.e2m1_hi);
    sign = _mm512_set1_epi8(static_cast<char>(0x80));
    nibble = _mm512_set1_epi8(0x0F);
    lane_of_scale = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  }

  // 128 e4m3 weights -> 4 x 32 bf16 in kFp8Order.
  DSV4_AVX512 void fp8(const uint8_t* p, __m512i w[4]) const {
    for (int c = 0; c < 2; ++c) {
      const __m512i b = _mm512_loadu_si512(p + 64 * c);
      const __m512i lo = _mm512_permutex2var_epi8(e4m3_lo0, b, e4m3_lo1);  // index bit 7 ignored
      const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(e4m3_hi0, b, e4m3_hi1), b, sign,
                                                   0xF8);  // hi | (b & 0x80)
      w[2 * c] = _mm512_unpacklo_epi8(lo, hi);
      w[2 * c + 1] = _mm512_unpackhi_epi8(lo, hi);
    }
  }

  // 128 e2m1 weights (64 bytes) -> 4 x 32 bf16 in kFp4Order.
  DSV4_AVX512 void fp4(const uint8_t* p, __m512i w[4]) const {
    const __m512i b = _mm512_loadu_si512(p);
    const __m512i even = _mm512_and_si512(b, nibble), odd = _mm512_and_si512(_mm512_srli_epi16(b, 4), nibble);
    const __m512i even_lo = _mm512_shuffle_epi8(e2m1_lo, even), even_hi = _mm512_shuffle_epi8(e2m1_hi, even);
    const __m512i odd_lo = _mm512_shuffle_epi8(e2m1_lo, odd), odd_hi = _mm512_shuffle_epi8(e2m1_hi, odd);
    w[0] = _mm512_unpacklo_epi8(even_lo, even_hi);
    w[1] = _mm512_unpackhi_epi8(even_lo, even_hi);
    w[2] = _mm512_unpacklo_epi8(odd_lo, odd_hi);
    w[3] = _mm512_unpackhi_epi8(odd_lo, odd_hi);
  }

  // The four 1x32 weight scales of (row, k0 .. k0 + 127), one per lane group.
  DSV4_AVX512 __m512 fp4_scales(const Linear& w, int row, int k0) const {
    const size_t i = static_cast<size_t>(row) * (w.in / 32) + k0 / 32;
    __m128 s4;
    if (w.scale_f32) {
      s4 = _mm_loadu_ps(reinterpret_cast<const float*>(w.scale + 4 * i));
    } else {
      uint32_t bytes;
      std::memcpy(&bytes, w.scale + i, 4);
      s4 = _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(bytes))), 23));
    }
    return _mm512_permutexvar_ps(lane_of_scale, _mm512_castps128_ps512(s4));
  }
};

DSV4_AVX512 inline float hsum16(__m512 v) {
  const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 lo = _mm256_castps256_ps128(s), hi = _mm256_extractf128_ps(s, 1);
  __m128 q = _mm_add_ps(lo, hi);
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 0x55));
  return _mm_cvtss_f32(q);
}

}  // namespace dsv4::avx512
