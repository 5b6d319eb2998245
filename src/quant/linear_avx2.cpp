// The AVX2 + FMA + F16C body of linear(): the production path on x86-64 machines without
// AVX512-BF16 (chosen once per process at run time; linear.cpp keeps the scalar reference).
//
// Decoding. FP8 and FP4 codes become f16 bit patterns with a few integer operations per 16
// values, then floats by vcvtph2ps (exact):
//   e4m3: u = code << 8 (vpunpck with zero), arithmetic u >> 1 puts the sign in bit 15 and the
//         7 magnitude bits in 7..13 with a copy of the sign in bit 14, cleared by & 0xBFFF: the
//         f16 of w / 2^8 (e4m3 subnormals land on f16 subnormals, exactly);
//   e2m1: a vpshufb table of the f16's high byte (the low byte is zero for every e2m1 value).
// The powers of two go into the scales (exact). The byte unpacks work per 128-bit lane, so
// e4m3 comes out in natural order; e2m1 comes out as even and odd weights, and the inputs are
// permuted once per call to match (kFp4Order).
//
// Per (row, token) and 128-wide block, ONE order shared by the GEMV and the GEMM kernels: one
// 8-lane FMA chain over the block's 16 vectors of x * w' (w' the decoded weight; FP4 weights
// already times their 1x32 scale, exact), then total = fma(chain, block scale, total); at the
// end a horizontal sum in a fixed tree. So a token gives the same bits in a prefill, a decode
// step or any batch, on any number of threads.
//
// GEMM: a tile of 4 rows x 128 is decoded into L1 once and used for up to 16 tokens, three
// tokens at a time (12 chains in registers, 7 loads per 12 FMAs). GEMV: 8 rows decoded in registers side
// by side (8 independent chains), with the next rows prefetched. The GEMM walks row tiles
// inside token tiles, so a token tile's inputs (packed block by block) stay in L2.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "quant/formats.h"
#include "quant/linear_kernels.h"

namespace dsv4 {

#define DSV4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace {

constexpr int kRows = 4;       // GEMM tile rows
constexpr int kTokens = 16;    // GEMM tile tokens
constexpr int kGemvRows = 8;
constexpr int kGroup = 3;      // GEMM tokens per register tile (4 x 3 chains, 7 loads per 12 FMAs)   // GEMV rows in flight: 8 independent FMA chains hide the latency

// FP4 input order per 64 values (two scale blocks): vector v (8 floats) holds weights
// 16 (v / 2) + 2j + v % 2 (even weights from the low nibbles, odd from the high ones).
constexpr std::array<uint8_t, 64> kFp4Order = [] {
  std::array<uint8_t, 64> o{};
  for (int p = 0; p < 64; ++p) o[p] = static_cast<uint8_t>(16 * (p / 16) + 2 * (p % 8) + (p / 8) % 2);
  return o;
}();

// Two f16 vectors (16 values each, per-lane halves) -> 4 float vectors in the order lo0, lo1,
// hi0, hi1 of the 128-bit lanes.
DSV4_AVX2 inline void f16_to_f32(__m256i h0, __m256i h1, __m256 out[4]) {
  out[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(h0));
  out[1] = _mm256_cvtph_ps(_mm256_castsi256_si128(h1));
  out[2] = _mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1));
  out[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1));
}

// 32 e4m3 codes -> 4 x 8 floats of w / 2^8, natural order.
DSV4_AVX2 inline void e4m3_32(const uint8_t* p, __m256 out[4]) {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i zero = _mm256_setzero_si256(), mask = _mm256_set1_epi16(static_cast<short>(0xBFFF));
  const __m256i h0 = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpacklo_epi8(zero, b), 1), mask);  // bytes 0-7 | 16-23
  const __m256i h1 = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpackhi_epi8(zero, b), 1), mask);  // 8-15 | 24-31
  f16_to_f32(h0, h1, out);
}

// 32 e2m1 codes (16 bytes, one 1x32 scale block) -> 4 x 8 floats of w * sb in kFp4Order. Every
// e2m1 value is a normal f16 whose low byte is zero, so a vpshufb table of high bytes and a
// byte unpack make the f16 (no f16 subnormals, which some CPUs convert slowly).
DSV4_AVX2 inline void e2m1_32(const uint8_t* p, __m256 sb, __m256 out[4]) {
  const __m128i f16_high = _mm_setr_epi8(0x00, 0x38, 0x3C, 0x3E, 0x40, 0x42, 0x44, 0x46,  //
                                         static_cast<char>(0x80), static_cast<char>(0xB8), static_cast<char>(0xBC),
                                         static_cast<char>(0xBE), static_cast<char>(0xC0), static_cast<char>(0xC2),
                                         static_cast<char>(0xC4), static_cast<char>(0xC6));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), nib = _mm_set1_epi8(0x0F), zero = _mm_setzero_si128();
  const __m128i even = _mm_shuffle_epi8(f16_high, _mm_and_si128(b, nib));                     // low nibbles
  const __m128i odd = _mm_shuffle_epi8(f16_high, _mm_and_si128(_mm_srli_epi16(b, 4), nib));  // high nibbles
  out[0] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi8(zero, even)), sb);  // weights 0, 2, .., 14
  out[1] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi8(zero, odd)), sb);   // 1, 3, .., 15
  out[2] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpackhi_epi8(zero, even)), sb);  // 16, .., 30
  out[3] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpackhi_epi8(zero, odd)), sb);   // 17, .., 31
}

DSV4_AVX2 inline void bf16_16(const uint8_t* p, __m256 out[2]) {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i zero = _mm256_setzero_si256();
  // Per lane: words 0-3 and 4-7 -> floats; reorder the lanes back to natural order.
  const __m256i lo = _mm256_unpacklo_epi16(zero, b), hi = _mm256_unpackhi_epi16(zero, b);
  out[0] = _mm256_castsi256_ps(_mm256_permute2x128_si256(lo, hi, 0x20));
  out[1] = _mm256_castsi256_ps(_mm256_permute2x128_si256(lo, hi, 0x31));
}

// Decoding steps: kValues weights of one row from value k on, as kValues / 8 float vectors
// (w' as defined above).
template <WeightFormat F>
constexpr int kValues = F == WeightFormat::fp8 ? 32 : F == WeightFormat::fp4 ? 32 : F == WeightFormat::bf16 ? 16 : 8;

template <WeightFormat F>
DSV4_AVX2 inline void decode_piece(const Linear& w, int row, int k, __m256* v) {
  if constexpr (F == WeightFormat::fp8) {
    e4m3_32(w.weight + static_cast<size_t>(row) * w.in + k, v);
  } else if constexpr (F == WeightFormat::fp4) {
    e2m1_32(w.weight + (static_cast<size_t>(row) * w.in + k) / 2, _mm256_set1_ps(w.scale_at(row, k)), v);
  } else if constexpr (F == WeightFormat::bf16) {
    bf16_16(w.weight + (static_cast<size_t>(row) * w.in + k) * 2, v);
  } else {
    v[0] = _mm256_loadu_ps(reinterpret_cast<const float*>(w.weight) + static_cast<size_t>(row) * w.in + k);
  }
}

// A chain covers one 128-wide block (the last block of a float row may be shorter);
// chain_scale: the factor applied to it, before the activation scale (FP8: the weight scale,
// times 2^8 to undo the f16 decoding's; FP4 weights carry their 1x32 scales already).
template <WeightFormat F>
DSV4_AVX2 inline float chain_scale(const Linear& w, int row, int k0) {
  if constexpr (F == WeightFormat::fp8) return w.scale_at(row, k0) * 256.0f;
  return 1.0f;
}

DSV4_AVX2 inline float hsum(__m256 s) {
  const __m128 lo = _mm256_castps256_ps128(s), hi = _mm256_extractf128_ps(s, 1);
  __m128 q = _mm_add_ps(lo, hi);
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 0x55));
  return _mm_cvtss_f32(q);
}

size_t row_bytes(const Linear& w) {
  switch (w.format) {
    case WeightFormat::fp8: return w.in;
    case WeightFormat::fp4: return w.in / 2;
    case WeightFormat::bf16: return 2 * static_cast<size_t>(w.in);
    case WeightFormat::f32: return 4 * static_cast<size_t>(w.in);
  }
  return 0;
}

// One token, rows [r0, r0 + 8) (rows past `rows` repeat the last and are dropped); the rows'
// chains advance side by side, so they overlap their FMA latencies.
template <WeightFormat F>
DSV4_AVX2 void gemv(const Linear& w, const float* x, const float* sa, int row_begin, int rows, int r0, float* y) {
  constexpr int P = kValues<F>, V = P / 8;
  const int in = w.in;
  const size_t rb = row_bytes(w);
  const size_t block_bytes = rb * 128 / in;
  int row[kGemvRows];
  for (int r = 0; r < kGemvRows; ++r) row[r] = row_begin + std::min(r0 + r, rows - 1);
  __m256 total[kGemvRows];
  for (auto& t : total) t = _mm256_setzero_ps();
  for (int k0 = 0; k0 < in; k0 += 128) {
    const int len = std::min(128, in - k0);
    // The same place kGemvRows rows on, which the next call reads: short rows give the hardware
    // prefetcher too little to go on.
    for (int r = 0; r < kGemvRows; ++r) {
      const uint8_t* ahead = w.weight + static_cast<size_t>(row[r]) * rb + k0 * rb / in + kGemvRows * rb;
      for (size_t b = 0; b < block_bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T1);
    }
    __m256 chain[kGemvRows];
    for (auto& c : chain) c = _mm256_setzero_ps();
    for (int k = k0; k < k0 + len; k += P) {
#pragma GCC unroll 8  // fully unrolled, so the chains live in registers
      for (int r = 0; r < kGemvRows; ++r) {
        __m256 v[V];
        decode_piece<F>(w, row[r], k, v);
#pragma GCC unroll 8
        for (int j = 0; j < V; ++j) chain[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8 * j), v[j], chain[r]);
      }
    }
    const float s_act = sa ? sa[k0 / 128] : 1.0f;
    for (int r = 0; r < kGemvRows; ++r)
      total[r] = _mm256_fmadd_ps(chain[r], _mm256_set1_ps(s_act * chain_scale<F>(w, row[r], k0)), total[r]);
  }
  for (int r = 0; r < std::min(kGemvRows, rows - r0); ++r) y[r0 + r] = hsum(total[r]);
}

// The chains of kRows rows x G tokens (t, t + 1, ..) over one block, in registers, then added
// to the tokens' totals (G consecutive rows of total[]).
template <int G>
DSV4_AVX2 inline void group(const float* x, int n, int k0, int nv, const __m256 (*wv)[16], const float* sa,
                            int n_act_blocks, const float* scale, int t, __m256 (*total)[kRows]) {
  const float* x0 = x + (static_cast<size_t>(k0 / 128) * n + t) * 128 + k0 % 128;
  __m256 acc[G][kRows];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) acc[g][r] = _mm256_setzero_ps();
  for (int i = 0; i < nv; ++i) {
    __m256 xv[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) xv[g] = _mm256_loadu_ps(x0 + 128 * g + 8 * i);
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      const __m256 wr = wv[r][i];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) acc[g][r] = _mm256_fmadd_ps(xv[g], wr, acc[g][r]);
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
    const float s = sa ? sa[static_cast<size_t>(t + g) * n_act_blocks + k0 / 128] : 1.0f;
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) total[g][r] = _mm256_fmadd_ps(acc[g][r], _mm256_set1_ps(s * scale[r]), total[g][r]);
  }
}

// Tokens [t0, t1) x rows [r0, r0 + 4): each 4 x 128 block decoded once into L1.
template <WeightFormat F>
DSV4_AVX2 void gemm_tile(const Linear& w, const float* x, int n, const float* sa, int n_act_blocks,
                         int row_begin, int rows, int r0, int t0, int t1, float* y) {
  const int in = w.in;
  int row[kRows];
  for (int r = 0; r < kRows; ++r) row[r] = row_begin + std::min(r0 + r, rows - 1);
  alignas(32) __m256 wv[kRows][16];
  float scale[kRows];
  __m256 total[kTokens][kRows];
  for (int t = 0; t < t1 - t0; ++t)
    for (int r = 0; r < kRows; ++r) total[t][r] = _mm256_setzero_ps();
  for (int k0 = 0; k0 < in; k0 += 128) {
    const int len = std::min(128, in - k0), nv = len / 8;
    for (int r = 0; r < kRows; ++r) {
      for (int k = 0; k < len; k += kValues<F>) decode_piece<F>(w, row[r], k0 + k, wv[r] + k / 8);
      scale[r] = chain_scale<F>(w, row[r], k0);
    }
    int t = t0;
    for (; t + kGroup <= t1; t += kGroup) group<kGroup>(x, n, k0, nv, wv, sa, n_act_blocks, scale, t, total + (t - t0));
    for (; t + 2 <= t1; t += 2) group<2>(x, n, k0, nv, wv, sa, n_act_blocks, scale, t, total + (t - t0));
    for (; t < t1; ++t) group<1>(x, n, k0, nv, wv, sa, n_act_blocks, scale, t, total + (t - t0));
  }
  const int nr = std::min(kRows, rows - r0);
  for (int t = t0; t < t1; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t) * rows + r0 + r] = hsum(total[t - t0][r]);
}

template <WeightFormat F>
void run(const Linear& w, const float* x, const float* s, int n_act_blocks, int n, int row_begin, int rows, float* y) {
  for_each_tile(
      n, rows, kGemvRows, kRows, kTokens, [&](int r0) { gemv<F>(w, x, s, row_begin, rows, r0, y); },
      [&](int r0, int t0, int t1) { gemm_tile<F>(w, x, n, s, n_act_blocks, row_begin, rows, r0, t0, t1, y); });
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
  // The inputs block by block ([in / 128][n][128], the last block zero-padded): a tile's
  // tokens then lie side by side instead of `in` floats apart (a multiple of 4 KiB for the
  // usual widths, which maps them all to the same L1 sets). FP4 weights decode as even / odd
  // halves: their inputs are permuted to match. One token of other weights is already in that
  // layout (the GEMV reads no padding), so the decode step copies nothing.
  const float* x = xq;
  std::vector<float> packed;
  if (n > 1 || w.format == WeightFormat::fp4) {
    const int n_blocks = (w.in + 127) / 128;
    packed.assign(static_cast<size_t>(n_blocks) * n * 128, 0.0f);
    for (int t = 0; t < n; ++t)
      for (int kb = 0; kb < n_blocks; ++kb) {
        const float* src = xq + static_cast<size_t>(t) * w.in + kb * 128;
        float* dst = packed.data() + (static_cast<size_t>(kb) * n + t) * 128;
        if (w.format == WeightFormat::fp4) {
          for (int p = 0; p < 128; ++p) dst[p] = src[p / 64 * 64 + kFp4Order[p % 64]];
        } else {
          std::copy_n(src, std::min(128, w.in - kb * 128), dst);
        }
      }
    x = packed.data();
  }
  const float* s = quantize_input ? sa : nullptr;
  switch (w.format) {
    case WeightFormat::fp8: return run<WeightFormat::fp8>(w, x, s, n_act_blocks, n, row_begin, rows, y);
    case WeightFormat::fp4: return run<WeightFormat::fp4>(w, x, s, n_act_blocks, n, row_begin, rows, y);
    case WeightFormat::bf16: return run<WeightFormat::bf16>(w, x, s, n_act_blocks, n, row_begin, rows, y);
    case WeightFormat::f32: return run<WeightFormat::f32>(w, x, s, n_act_blocks, n, row_begin, rows, y);
  }
}

}  // namespace dsv4
