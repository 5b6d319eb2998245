// The AVX-512 BF16 body of linear() for FP8 / FP4 weights with FP8-quantized inputs: the
// production path where the CPU has AVX512-BF16 (chosen once per process, like the AVX2 one).
//
// Why bf16 keeps the reference's semantics: the quantized inputs are e4m3 values and the
// weights e4m3 or e2m1 values (unscaled), all exactly representable in bf16, and the product
// of two bf16 values is exact in float; so vdpbf16ps multiplies exactly the numbers the
// reference multiplies, accumulating in float like every other path (in its own fixed order).
// Inputs that are not quantized (the smooth validation mode, wo_a) and float weights are not on
// the bf16 grid and stay on the AVX2 path (the choice depends on the weight and the mode only,
// never on the number of tokens, so a token still gives the same bits in prefill and decode).
//
// Per (row, token): for each 128-wide block, FP8: two chains of vdpbf16ps over its four 32-wide
// pieces (a: 0 and 2, b: 1 and 3), then total = fma(a + b, sa * sb * 2^8, total); FP4: each
// 32-wide piece is one vdpbf16ps into a fresh accumulator, total = fma(piece, sa * sb / 2, total).
// A final 16-lane reduction in a fixed tree. Weights are decoded per 4 rows x 128 into bf16 in
// L1 and reused for a tile of up to 16 tokens.
// GCC 12 warns inside its own AVX-512 headers (maybe-uninitialized in the cvt intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "quant/formats.h"
#include "quant/linear_kernels.h"

namespace dsv4 {

#define DSV4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vbmi,avx2,fma,f16c")))

namespace {

constexpr int kRows = 4;
constexpr int kTokens = 16;

// 32 floats (a, b: 16 each) -> 32 bf16 (exact for values on the bf16 grid).
DSV4_AVX512 inline __m512i to_bf16(__m512 a, __m512 b) { return (__m512i)_mm512_cvtne2ps_pbh(b, a); }

// 32 e4m3 bytes -> 32 bf16 of w / 2^8 (through the exact e4m3 -> f16 bit trick).
DSV4_AVX512 inline __m512i e4m3_32(const uint8_t* p) {
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i h = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(b, _mm512_set1_epi16(0x7F)), 7),
                                    _mm512_slli_epi16(_mm512_and_si512(b, _mm512_set1_epi16(0x80)), 8));
  return to_bf16(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)));
}

// 16 bytes of e2m1 (32 values, low nibble first) -> 32 bf16 of 2w, by table: vpermb picks
// each value's low and high byte from a 32-byte table (2w: 0, 1, 2, 3, 4, 6, 8, 12 and their
// negatives; nibble 8, -0, gives +0 as an int8 table would).
DSV4_AVX512 inline __m512i e2m1_32(const uint8_t* p) {
  static const uint16_t bf16_of_2w[16] = {0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40C0, 0x4100, 0x4140,
                                          0x0000, 0xBF80, 0xC000, 0xC040, 0xC080, 0xC0C0, 0xC100, 0xC140};
  alignas(64) static const auto table = [] {
    struct T { uint8_t b[64]; } t{};
    for (int i = 0; i < 16; ++i) {
      t.b[i] = static_cast<uint8_t>(bf16_of_2w[i] & 0xFF);
      t.b[16 + i] = static_cast<uint8_t>(bf16_of_2w[i] >> 8);
    }
    return t;
  }();
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F));
  const __m256i nib = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));  // values 0..31
  const __m512i w = _mm512_cvtepu8_epi16(nib);
  const __m512i idx = _mm512_or_si512(w, _mm512_slli_epi16(_mm512_add_epi16(w, _mm512_set1_epi16(16)), 8));
  return _mm512_permutexvar_epi8(idx, _mm512_load_si512(table.b));
}

DSV4_AVX512 inline float hsum16(__m512 v) {
  const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 lo = _mm256_castps256_ps128(s), hi = _mm256_extractf128_ps(s, 1);
  __m128 q = _mm_add_ps(lo, hi);
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 0x55));
  return _mm_cvtss_f32(q);
}

DSV4_AVX512 void tile(const Linear& w, const uint16_t* xb, const float* sa, int n_act_blocks, int row_begin,
                      int rows, int r0, int t0, int t1, float* y) {
  const int in = w.in;
  const bool fp4 = w.format == WeightFormat::fp4;
  alignas(64) __m512i wb[kRows][4];  // 4 rows x 128 bf16
  float sb[kRows][4];                // fp8: [r][0] = sb * 2^8; fp4: per 32, sb / 2
  __m512 total[kTokens][kRows];
  for (int t = 0; t < t1 - t0; ++t)
    for (int r = 0; r < kRows; ++r) total[t][r] = _mm512_setzero_ps();
  for (int k0 = 0; k0 < in; k0 += 128) {
    for (int r = 0; r < kRows; ++r) {
      const int row = row_begin + std::min(r0 + r, rows - 1);
      if (fp4) {
        const uint8_t* p = w.weight + (static_cast<size_t>(row) * in + k0) / 2;
        for (int j = 0; j < 4; ++j) {
          wb[r][j] = e2m1_32(p + 16 * j);
          sb[r][j] = w.scale_at(row, k0 + 32 * j) * 0.5f;
        }
      } else {
        const uint8_t* p = w.weight + static_cast<size_t>(row) * in + k0;
        for (int j = 0; j < 4; ++j) wb[r][j] = e4m3_32(p + 32 * j);
        sb[r][0] = w.scale_at(row, k0) * 256.0f;
      }
    }
    for (int t = t0; t < t1; ++t) {
      const uint16_t* xt = xb + static_cast<size_t>(t) * in + k0;
      const __m512i x0 = _mm512_loadu_si512(xt), x1 = _mm512_loadu_si512(xt + 32);
      const __m512i x2 = _mm512_loadu_si512(xt + 64), x3 = _mm512_loadu_si512(xt + 96);
      const float s_act = sa[static_cast<size_t>(t) * n_act_blocks + k0 / 128];
      __m512* tot = total[t - t0];
      for (int r = 0; r < kRows; ++r) {
        if (fp4) {
          const __m512i xs[4] = {x0, x1, x2, x3};
          for (int j = 0; j < 4; ++j) {
            const __m512 piece = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)wb[r][j], (__m512bh)xs[j]);
            tot[r] = _mm512_fmadd_ps(piece, _mm512_set1_ps(s_act * sb[r][j]), tot[r]);
          }
        } else {
          __m512 a = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)wb[r][0], (__m512bh)x0);
          __m512 b = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)wb[r][1], (__m512bh)x1);
          a = _mm512_dpbf16_ps(a, (__m512bh)wb[r][2], (__m512bh)x2);
          b = _mm512_dpbf16_ps(b, (__m512bh)wb[r][3], (__m512bh)x3);
          tot[r] = _mm512_fmadd_ps(_mm512_add_ps(a, b), _mm512_set1_ps(s_act * sb[r][0]), tot[r]);
        }
      }
    }
  }
  const int nr = std::min(kRows, rows - r0);
  for (int t = t0; t < t1; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t) * rows + r0 + r] = hsum16(total[t - t0][r]);
}

// xq [n, in] floats on the bf16 grid -> bf16 (same element order as the weights' conversion).
DSV4_AVX512 void convert_input(const float* xq, size_t count, uint16_t* xb) {
  for (size_t i = 0; i < count; i += 32) {
    const __m512i v = to_bf16(_mm512_loadu_ps(xq + i), _mm512_loadu_ps(xq + i + 16));
    _mm512_storeu_si512(xb + i, v);
  }
}

}  // namespace

bool linear_avx512_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
         __builtin_cpu_supports("avx512vbmi") &&
         __builtin_cpu_supports("f16c");
}

bool linear_avx512_handles(const Linear& w, bool quantize_input) {
  return quantize_input && (w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4) && w.in % 128 == 0;
}

void linear_avx512(const Linear& w, const float* xq, const float* sa, int n_act_blocks, int n, int row_begin,
                   int rows, float* y) {
  std::vector<uint16_t> xb(static_cast<size_t>(n) * w.in);
  convert_input(xq, xb.size(), xb.data());
  const size_t n_row_tiles = (rows + kRows - 1) / kRows, n_token_tiles = (n + kTokens - 1) / kTokens;
  pool().parallel_for(n_row_tiles * n_token_tiles, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const int r0 = static_cast<int>(i / n_token_tiles) * kRows;
      const int t0 = static_cast<int>(i % n_token_tiles) * kTokens;
      tile(w, xb.data(), sa, n_act_blocks, row_begin, rows, r0, t0, std::min(n, t0 + kTokens), y);
    }
  });
}

}  // namespace dsv4
