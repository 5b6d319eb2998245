// The AVX2 + FMA + F16C body of linear(): the production path on x86-64 machines that have
// them (chosen once per process at run time; linear.cpp keeps the scalar reference).
//
// Work is tiled as 4 output rows x up to 16 tokens x one 128-wide block of the input: the
// block of 4 weight rows is decoded once into floats in L1 and used for every token of the
// tile. Each (row, token) dot product has ONE fixed arithmetic order whatever the tile sizes,
// the thread count or the other rows in the call: per 32-wide (fp4) or 128-wide (fp8, float)
// block, two 8-lane FMA chains over alternate vectors, summed lane by lane and then across
// lanes in a fixed tree, then scaled and added to the row's accumulator in block order. So a
// token gives the same bits in a prefill, a decode step or any batch.
//
// Decoding: e4m3 bytes become f16 bit patterns by shifts and masks ((b & 0x7f) << 7 with the
// sign moved to bit 15), converted exactly by vcvtph2ps; the f16 value is w / 2^8, so 2^8 is
// folded into the block scale (a power of two: exact). e2m1 nibbles go through a vpshufb table
// of 2w (small integers) and are converted from int32; 1/2 is folded into the scale.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "quant/formats.h"
#include "quant/linear_kernels.h"

namespace dsv4 {

#define DSV4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace {

constexpr int kRowTile = 4;
constexpr int kTokenTile = 16;

// 16 e4m3 bytes -> two vectors of 8 floats (w / 2^8), in registers.
DSV4_AVX2 inline void e4m3_16(const uint8_t* p, __m256& lo, __m256& hi) {
  const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7F)), 7),
                                    _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8));
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

// 16 bytes of e2m1 -> four vectors of 8 floats, each times sb (the same values decode_block
// stores in wbuf, so both paths compute the same bits).
DSV4_AVX2 inline void e2m1_32(const uint8_t* p, __m256 sb, __m256 v[4]) {
  const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(b, _mm_set1_epi8(0x0F)));
  const __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F)));
  const __m128i v0 = _mm_unpacklo_epi8(lo, hi), v1 = _mm_unpackhi_epi8(lo, hi);
  v[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v0)), sb);
  v[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v0, 8))), sb);
  v[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v1)), sb);
  v[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v1, 8))), sb);
}

DSV4_AVX2 inline void decode_bf16_16(const uint8_t* p, float* dst) {
  const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  _mm256_storeu_ps(dst, _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)));
  const __m256i c = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
  _mm256_storeu_ps(dst + 8, _mm256_castsi256_ps(_mm256_slli_epi32(c, 16)));
}

// Per (row, token) the arithmetic is: for each 128-wide block, two 8-lane FMA chains over its
// even and odd vectors of x * w' (w' the decoded weights, fp4 already times its 1x32 scale),
// then total = fma(a + b, block_scale, total); at the end one horizontal sum in a fixed tree.
// block_scale is sa * sb * 2^8 for fp8, sa for fp4 (sb is in w'), 1 for float weights.

// Decodes 4 rows of one 128-wide block (or the first `len` elements for float weights) into
// wbuf and their block scales (1 when the scale is inside w').
DSV4_AVX2 void decode_block(const Linear& w, int row_begin, int rows, int r0, int k0, int len,
                            float (*wbuf)[128], float* block_scale) {
  const int in = w.in;
  for (int r = 0; r < kRowTile; ++r) {
    const int row = row_begin + std::min(r0 + r, rows - 1);  // rows past the end repeat the last
    switch (w.format) {
      case WeightFormat::fp8: {
        const uint8_t* p = w.weight + static_cast<size_t>(row) * in + k0;
        for (int k = 0; k < 128; k += 16) {
          __m256 lo, hi;
          e4m3_16(p + k, lo, hi);
          _mm256_store_ps(wbuf[r] + k, lo);
          _mm256_store_ps(wbuf[r] + k + 8, hi);
        }
        block_scale[r] = w.scale_at(row, k0) * 256.0f;
        break;
      }
      case WeightFormat::fp4: {
        const uint8_t* p = w.weight + (static_cast<size_t>(row) * in + k0) / 2;
        for (int k = 0; k < 128; k += 32) {
          __m256 v[4];
          e2m1_32(p + k / 2, _mm256_set1_ps(w.scale_at(row, k0 + k) * 0.5f), v);
          for (int j = 0; j < 4; ++j) _mm256_store_ps(wbuf[r] + k + 8 * j, v[j]);
        }
        block_scale[r] = 1.0f;
        break;
      }
      case WeightFormat::bf16: {
        const uint8_t* p = w.weight + (static_cast<size_t>(row) * in + k0) * 2;
        for (int k = 0; k < len; k += 16) decode_bf16_16(p + 2 * k, wbuf[r] + k);
        block_scale[r] = 1.0f;
        break;
      }
      case WeightFormat::f32:
        std::memcpy(wbuf[r], w.weight + (static_cast<size_t>(row) * in + k0) * 4, len * 4);
        block_scale[r] = 1.0f;
        break;
    }
  }
}

// total[r] = fma(sum of the block's x * w'[r] in two chains, scale[r], total[r]) for 4 rows.
DSV4_AVX2 inline void block_fma4(const float* x, const float (*wbuf)[128], int len, const float* scale,
                                 __m256* total) {
  __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
  for (int k = 0; k < len; k += 16) {
    const __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);
    a0 = _mm256_fmadd_ps(xa, _mm256_load_ps(wbuf[0] + k), a0);
    b0 = _mm256_fmadd_ps(xb, _mm256_load_ps(wbuf[0] + k + 8), b0);
    a1 = _mm256_fmadd_ps(xa, _mm256_load_ps(wbuf[1] + k), a1);
    b1 = _mm256_fmadd_ps(xb, _mm256_load_ps(wbuf[1] + k + 8), b1);
    a2 = _mm256_fmadd_ps(xa, _mm256_load_ps(wbuf[2] + k), a2);
    b2 = _mm256_fmadd_ps(xb, _mm256_load_ps(wbuf[2] + k + 8), b2);
    a3 = _mm256_fmadd_ps(xa, _mm256_load_ps(wbuf[3] + k), a3);
    b3 = _mm256_fmadd_ps(xb, _mm256_load_ps(wbuf[3] + k + 8), b3);
  }
  total[0] = _mm256_fmadd_ps(_mm256_add_ps(a0, b0), _mm256_set1_ps(scale[0]), total[0]);
  total[1] = _mm256_fmadd_ps(_mm256_add_ps(a1, b1), _mm256_set1_ps(scale[1]), total[1]);
  total[2] = _mm256_fmadd_ps(_mm256_add_ps(a2, b2), _mm256_set1_ps(scale[2]), total[2]);
  total[3] = _mm256_fmadd_ps(_mm256_add_ps(a3, b3), _mm256_set1_ps(scale[3]), total[3]);
}

DSV4_AVX2 inline float hsum(__m256 s) {
  const __m128 lo = _mm256_castps256_ps128(s), hi = _mm256_extractf128_ps(s, 1);
  __m128 q = _mm_add_ps(lo, hi);
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 0x55));
  return _mm_cvtss_f32(q);
}

// One token, 4 rows, fp8 or fp4 weights decoded straight into registers (no buffer): the
// decode step's GEMV. Same arithmetic as tile() + block_fma4.
DSV4_AVX2 void gemv_tile(const Linear& w, const float* x, const float* sa, bool quantize_input, int row_begin,
                         int rows, int r0, float* y) {
  const int in = w.in;
  const bool fp4 = w.format == WeightFormat::fp4;
  int row[kRowTile];
  for (int r = 0; r < kRowTile; ++r) row[r] = row_begin + std::min(r0 + r, rows - 1);
  __m256 total[kRowTile] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int k0 = 0; k0 < in; k0 += 128) {
    const float s_act = quantize_input ? sa[k0 / 128] : 1.0f;
    for (int r = 0; r < kRowTile; ++r) {
      __m256 a = _mm256_setzero_ps(), b = a;
      if (fp4) {
        const uint8_t* p = w.weight + (static_cast<size_t>(row[r]) * in + k0) / 2;
        for (int k = 0; k < 128; k += 32) {
          __m256 v[4];
          e2m1_32(p + k / 2, _mm256_set1_ps(w.scale_at(row[r], k0 + k) * 0.5f), v);
          a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k0 + k), v[0], a);
          b = _mm256_fmadd_ps(_mm256_loadu_ps(x + k0 + k + 8), v[1], b);
          a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k0 + k + 16), v[2], a);
          b = _mm256_fmadd_ps(_mm256_loadu_ps(x + k0 + k + 24), v[3], b);
        }
        total[r] = _mm256_fmadd_ps(_mm256_add_ps(a, b), _mm256_set1_ps(s_act), total[r]);
      } else {
        const uint8_t* p = w.weight + static_cast<size_t>(row[r]) * in + k0;
        for (int k = 0; k < 128; k += 16) {
          __m256 lo, hi;
          e4m3_16(p + k, lo, hi);
          a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k0 + k), lo, a);
          b = _mm256_fmadd_ps(_mm256_loadu_ps(x + k0 + k + 8), hi, b);
        }
        total[r] = _mm256_fmadd_ps(_mm256_add_ps(a, b), _mm256_set1_ps(s_act * (w.scale_at(row[r], k0) * 256.0f)), total[r]);
      }
    }
  }
  for (int r = 0; r < std::min(kRowTile, rows - r0); ++r) y[r0 + r] = hsum(total[r]);
}

// One tile: rows [r0, r0 + 4) (rows past `rows` are padding and dropped), tokens [t0, t1).
DSV4_AVX2 void tile(const Linear& w, const float* xq, const float* sa, int n_act_blocks, bool quantize_input,
                    int row_begin, int rows, int r0, int t0, int t1, float* y) {
  const int in = w.in;
  alignas(32) float wbuf[kRowTile][128];
  __m256 total[kTokenTile][kRowTile];
  for (int t = 0; t < t1 - t0; ++t)
    for (int r = 0; r < kRowTile; ++r) total[t][r] = _mm256_setzero_ps();
  float block_scale[kRowTile], scale[kRowTile];
  for (int k0 = 0; k0 < in; k0 += 128) {
    const int len = std::min(128, in - k0);  // float weights may end in a partial block (len % 16 == 0)
    decode_block(w, row_begin, rows, r0, k0, len, wbuf, block_scale);
    for (int t = t0; t < t1; ++t) {
      const float s_act = quantize_input ? sa[static_cast<size_t>(t) * n_act_blocks + k0 / 128] : 1.0f;
      for (int r = 0; r < kRowTile; ++r) scale[r] = s_act * block_scale[r];
      block_fma4(xq + static_cast<size_t>(t) * in + k0, wbuf, len, scale, total[t - t0]);
    }
  }
  const int nr = std::min(kRowTile, rows - r0);
  for (int t = t0; t < t1; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t) * rows + r0 + r] = hsum(total[t - t0][r]);
}

}  // namespace

bool linear_avx2_supported() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool linear_avx2_handles(const Linear& w) {
  // fp8 / fp4 rows are whole 128-blocks (the config guarantees it for every quantized layer);
  // float rows need a multiple of 16.
  if (w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4) return w.in % 128 == 0;
  return w.in % 16 == 0;
}

void linear_avx2(const Linear& w, const float* xq, const float* sa, int n_act_blocks, bool quantize_input, int n,
                 int row_begin, int rows, float* y) {
  const size_t n_row_tiles = (rows + kRowTile - 1) / kRowTile;
  if (n == 1 && (w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4)) {
    pool().parallel_for(n_row_tiles, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i)
        gemv_tile(w, xq, sa, quantize_input, row_begin, rows, static_cast<int>(i) * kRowTile, y);
    });
    return;
  }
  const size_t n_token_tiles = (n + kTokenTile - 1) / kTokenTile;
  pool().parallel_for(n_row_tiles * n_token_tiles, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const int r0 = static_cast<int>(i / n_token_tiles) * kRowTile;
      const int t0 = static_cast<int>(i % n_token_tiles) * kTokenTile;
      tile(w, xq, sa, n_act_blocks, quantize_input, row_begin, rows, r0, t0, std::min(n, t0 + kTokenTile), y);
    }
  });
}

}  // namespace dsv4
