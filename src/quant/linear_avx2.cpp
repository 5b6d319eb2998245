// The AVX2 + FMA body of linear(): the production path on x86-64 machines without
// AVX512-BF16 (chosen once per process at run time; linear.cpp keeps the scalar reference).
//
// Decoding. FP8 and FP4 codes become float bit patterns by integer operations alone (no
// conversion instruction, no multiply), or for FP4 in the GEMV exact integer products:
//   e4m3: sign << 31 | (code & 0x7F) << 20 is the float w * 2^-120, exact for every code
//         (subnormal codes become float subnormals). The inputs carry 2^K and the block scales
//         2^(120 - K), per token, so the FMAs only ever see normal products and sums.
//   e2m1: see fp4_avx2.h (vpshufb tables for 2w, and an exact integer decoder for the GEMV).
// The decoders' lane order is not the natural one; the inputs are permuted once per call to
// match (kFp8Order, fp4_avx2::kFloatOrder / kIntOrder).
//
// Per (row, token) and 128-wide block, ONE order shared by the GEMV and the GEMM kernels: one
// 8-lane FMA chain over the block's 16 vectors of x * w' (w' the decoded weight; FP4's integer
// GEMV gets the same lanes exactly, see fp4_avx2.h), then total = fma(chain, block scale *
// input scale, total), the block scale a vector (FP4: per lane); at the end a horizontal sum in
// a fixed tree. So a token gives the same bits in a prefill, a decode step or any batch, on any
// number of threads.
//
// GEMM: a tile of 16 rows x 128 is decoded into L1 once per block and swept by register tiles
// of 4 rows x 3 tokens (12 chains, 7 loads per 12 FMAs) for up to 64 tokens. GEMV: rows
// decoded in registers side by side (independent chains), with the next rows prefetched. The
// GEMM walks row tiles inside token tiles, so a token tile's inputs (packed block by block) stay
// in L2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <span>

#include "core/cpu.h"
#include "core/scratch.h"
#include "core/thread_pool.h"
#include "quant/act_quant_avx2.h"
#include "quant/formats.h"
#include "quant/fp4_avx2.h"
#include "quant/linear_kernels.h"

namespace dsv4 {

namespace {

constexpr int kTileRows = 16;  // GEMM tile rows, decoded into L1 once per 128-block (8 KiB)
constexpr int kQuad = 4;       // GEMM register tile: 4 rows x kGroup tokens
constexpr int kGroup = 3;      // (12 chains in registers, 7 loads per 12 FMAs)
constexpr int kTokens = 64;    // GEMM tile tokens: a decoded block serves 64 tokens (32: 10% slower, 96: 12%)
// GEMV rows in flight, as independent FMA chains that hide each other's latency, and the
// prefetch distance (the same place R rows on). 8: for FP8, 4 are as fast from L2 but a decode
// step on the flash-6l synth takes 4% longer (the weights come from memory, and the prefetch
// runs half as far ahead); FP4's integer decoder has no long chains, but 8 rows still beat 4
// by 5% and 2 by 10%.
constexpr int kGemvRows = 8;

// The FP8 decoder's output order, kFp8Order: vector v, lane l of a piece of 32 holds the piece's
// weight 16 (p / 16) + 2 (p % 8) + (p / 8) % 2 for p = 8 v + l (per 16: the even weights, then
// the odd): vpmovsxbw widens 16 codes to words and a dword holds two neighbours. The inputs are
// permuted once per call to match (fp8_inputs).

// 32 e4m3 codes -> 4 x 8 floats of w * 2^-120 in kFp8Order. The float with bits
// sign << 31 | (code & 0x7F) << 20 is exactly w * 2^-120, e4m3 subnormals included (they
// become float subnormals); the inputs carry 2^K (K <= 119, see pack_token) and the block
// scale 2^(120 - K), so FMAs see normal products and sums. No conversion instruction: a
// sign-extending widen, two shifts and two masks per 16 weights. Subnormal FMA operands cost
// nothing on this machine (Zen 4: an FMA loop on subnormal weights ran at the normal speed);
// the results are never subnormal, which is what most cores penalize.
DSV4_AVX2 inline void e4m3_32(const uint8_t* p, __m256 out[4]) {
  const __m256i mask = _mm256_set1_epi32(static_cast<int>(0x87F00000u));  // sign, 7 magnitude bits
  for (int h = 0; h < 2; ++h) {
    // Word j = code j sign-extended; dword i = codes 2i (low word) and 2i + 1 (high word).
    const __m256i s = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
    out[2 * h] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(s, 20), mask));     // even
    out[2 * h + 1] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(s, 4), mask));  // odd
  }
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
constexpr int kValues = F == WeightFormat::fp8 ? 32 : F == WeightFormat::fp4 ? 64 : F == WeightFormat::bf16 ? 16 : 8;

// Where one row's codes (and FP4 scales) start, found once per call rather than per piece.
struct RowRef {
  int row;
  const uint8_t* weight;
  const uint8_t* scale;  // the row's ue8m0 bytes or F32 scales (FP8: those of its 128 rows)
};

inline RowRef row_ref(const Linear& w, int row) {
  const size_t in = static_cast<size_t>(w.in);
  switch (w.format) {
    case WeightFormat::fp8:
      return {row, w.weight + row * in, w.scale + static_cast<size_t>(row / 128) * (in / 128) * (w.scale_f32 ? 4 : 1)};
    case WeightFormat::fp4: return {row, w.weight + row * in / 2, w.scale + row * (in / 32) * (w.scale_f32 ? 4 : 1)};
    case WeightFormat::bf16: return {row, w.weight + row * in * 2, nullptr};
    case WeightFormat::f32: return {row, w.weight + row * in * 4, nullptr};
  }
  return {};
}

template <WeightFormat F>
DSV4_AVX2 inline void decode_piece(const RowRef& r, int k, __m256* v) {
  if constexpr (F == WeightFormat::fp8) {
    e4m3_32(r.weight + k, v);
  } else if constexpr (F == WeightFormat::fp4) {
    fp4_avx2::decode_float(fp4_avx2::piece(r.weight + k / 128 * 64, k % 128 / 64), v);
  } else if constexpr (F == WeightFormat::bf16) {
    bf16_16(r.weight + 2 * static_cast<size_t>(k), v);
  } else {
    v[0] = _mm256_loadu_ps(reinterpret_cast<const float*>(r.weight) + k);
  }
}

// A chain covers one 128-wide block (the last block of a float row may be shorter);
// chain_scale: the factor applied to it, before the input's (FP8: the weight scale; FP4: the
// four 1x32 scales, per lane).
DSV4_AVX2 inline __m256 fp4_scales(const Linear& w, const RowRef& r, int k0) {
  if (w.scale_f32) return fp4_avx2::scale_vector_f32(r.scale + 4 * (k0 / 32));
  return fp4_avx2::scale_vector(r.scale + k0 / 32);
}
template <WeightFormat F>
DSV4_AVX2 inline __m256 chain_scale(const Linear& w, const RowRef& r, int k0) {
  if constexpr (F == WeightFormat::fp8) {
    float scale;
    if (w.scale_f32) std::memcpy(&scale, r.scale + 4 * (k0 / 128), 4);
    else scale = ue8m0_to_f32(r.scale[k0 / 128]);
    return _mm256_set1_ps(scale);
  }
  if constexpr (F == WeightFormat::fp4) return fp4_scales(w, r, k0);
  return _mm256_set1_ps(1.0f);
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

// One token, rows [r0, r0 + R) (rows past `rows` repeat the last and are dropped); the rows'
// chains advance side by side, so they overlap their FMA latencies.
template <WeightFormat F>
DSV4_AVX2 void gemv(const Linear& w, const float* x, const float* sa, int row_begin, int rows, int r0, float* y) {
  constexpr int P = kValues<F>, V = P / 8, R = kGemvRows;
  const int in = w.in;
  const size_t rb = row_bytes(w);
  const size_t block_bytes = rb * 128 / in;
  RowRef ref[R];
  for (int r = 0; r < R; ++r) ref[r] = row_ref(w, row_begin + std::min(r0 + r, rows - 1));
  __m256 total[R];
  for (auto& t : total) t = _mm256_setzero_ps();
  for (int k0 = 0; k0 < in; k0 += 128) {
    // FP8 rows are whole blocks: a fixed trip count lets the compiler unroll the block.
    const int len = F == WeightFormat::fp8 ? 128 : std::min(128, in - k0);
    // The same place R rows on, which the next call reads: short rows give the hardware
    // prefetcher too little to go on.
    for (int r = 0; r < R; ++r) {
      const uint8_t* ahead = ref[r].weight + k0 * rb / in + R * rb;
      if constexpr (F == WeightFormat::fp8) {
        _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T1);
      } else {
        for (size_t b = 0; b < block_bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T1);
      }
    }
    __m256 chain[R];
    for (auto& c : chain) c = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int k = k0; k < k0 + len; k += P) {
#pragma GCC unroll 8  // fully unrolled, so the chains live in registers
      for (int r = 0; r < R; ++r) {
        __m256 v[V];
        decode_piece<F>(ref[r], k, v);
#pragma GCC unroll 8
        for (int j = 0; j < V; ++j) chain[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8 * j), v[j], chain[r]);
      }
    }
    const __m256 s_act = _mm256_set1_ps(sa ? sa[k0 / 128] : 1.0f);
    for (int r = 0; r < R; ++r)
      total[r] = _mm256_fmadd_ps(chain[r], _mm256_mul_ps(chain_scale<F>(w, ref[r], k0), s_act), total[r]);
  }
  for (int r = 0; r < std::min(R, rows - r0); ++r) y[r0 + r] = hsum(total[r]);
}

// A single token's FP4 inputs for the integer decoder (fp4_avx2.h): a x as int16 in kIntOrder,
// 12 * the sum of a x per lane and block, and which blocks are narrow.
struct Fp4Codes {
  const int16_t* x;
  const int32_t* bias;
  const uint8_t* narrow;
};

// gemv() for FP4: rows [r0, r0 + R), the integer decoder on narrow input blocks and the float
// one on the others; the same lanes either way (fp4_avx2.h), the same order as the GEMM.
DSV4_AVX2 void gemv_fp4(const Linear& w, const float* x, const float* s, const Fp4Codes& codes, int row_begin,
                        int rows, int r0, float* y) {
  constexpr int R = kGemvRows;
  const size_t rb = static_cast<size_t>(w.in) / 2;
  RowRef ref[R];
  for (int r = 0; r < R; ++r) ref[r] = row_ref(w, row_begin + std::min(r0 + r, rows - 1));
  const int16_t* codes_x = codes.x;
  const int32_t* codes_bias = codes.bias;
  const uint8_t* narrow = codes.narrow;
  __m256 total[R];
  for (auto& t : total) t = _mm256_setzero_ps();
  for (int k0 = 0; k0 < w.in; k0 += 128) {
    for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(ref[r].weight + k0 / 2 + R * rb), _MM_HINT_T1);
    const int kb = k0 / 128;
    const __m256 s_in = _mm256_set1_ps(s[kb]);
    __m256 lanes[R];
    if (narrow[kb]) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        // Each row reads the codes from L1 again: held in registers across rows they spill.
        const int16_t* xi = codes_x + k0;
        const int32_t* bias = codes_bias + 8 * kb;
        asm("" : "+r"(xi), "+r"(bias));
        lanes[r] = fp4_avx2::lanes_int(ref[r].weight + k0 / 2, xi, bias);
      }
    } else {
      for (int r = 0; r < R; ++r) lanes[r] = fp4_avx2::lanes_float(ref[r].weight + k0 / 2, x + k0);
    }
    for (int r = 0; r < R; ++r)
      total[r] = _mm256_fmadd_ps(lanes[r], _mm256_mul_ps(fp4_scales(w, ref[r], k0), s_in), total[r]);
  }
  for (int r = 0; r < std::min(R, rows - r0); ++r) y[r0 + r] = hsum(total[r]);
}

// The chains of 4 rows (wv[0..3]) x G tokens (t, t + 1, ..) over one block, in registers, then
// added to the tokens' totals (total[g * kTileRows + 0..3]).
template <int G>
DSV4_AVX2 inline void group(const float* x, int n, int k0, int nv, const __m256 (*wv)[16], const float* sa,
                            int n_act_blocks, const __m256* scale, int t, __m256* total) {
  const float* x0 = x + (static_cast<size_t>(k0 / 128) * n + t) * 128 + k0 % 128;
  __m256 acc[G][kQuad];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int r = 0; r < kQuad; ++r) acc[g][r] = _mm256_setzero_ps();
  for (int i = 0; i < nv; ++i) {
    __m256 xv[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) xv[g] = _mm256_loadu_ps(x0 + 128 * g + 8 * i);
#pragma GCC unroll 4
    for (int r = 0; r < kQuad; ++r) {
      const __m256 wr = wv[r][i];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) acc[g][r] = _mm256_fmadd_ps(xv[g], wr, acc[g][r]);
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
    const __m256 s = _mm256_set1_ps(sa ? sa[static_cast<size_t>(t + g) * n_act_blocks + k0 / 128] : 1.0f);
#pragma GCC unroll 4
    for (int r = 0; r < kQuad; ++r) {
      __m256& sum = total[g * kTileRows + r];
      sum = _mm256_fmadd_ps(acc[g][r], _mm256_mul_ps(scale[r], s), sum);
    }
  }
}

// Tokens [t0, t1) x rows [r0, r0 + 16): each 16 x 128 block decoded into L1 once, then swept by
// register tiles of 4 rows x 3 tokens. 16 rows per tile let a token's inputs, read from L2,
// serve 16 rows' FMAs.
template <WeightFormat F>
DSV4_AVX2 void gemm_tile(const Linear& w, const float* x, int n, const float* sa, int n_act_blocks,
                         int row_begin, int rows, int r0, int t0, int t1, float* y) {
  const int in = w.in;
  const int nr = std::min(kTileRows, rows - r0), n_quads = (nr + kQuad - 1) / kQuad;
  RowRef ref[kTileRows];
  for (int r = 0; r < n_quads * kQuad; ++r) ref[r] = row_ref(w, row_begin + std::min(r0 + r, rows - 1));
  alignas(32) __m256 wv[kTileRows][16];
  __m256 scale[kTileRows];
  __m256 total[kTokens][kTileRows];
  for (int t = 0; t < t1 - t0; ++t)
    for (int r = 0; r < n_quads * kQuad; ++r) total[t][r] = _mm256_setzero_ps();
  const size_t rb = row_bytes(w), block_bytes = rb * 128 / in;
  for (int k0 = 0; k0 < in; k0 += 128) {
    const int len = std::min(128, in - k0), nv = len / 8;
    for (int r = 0; r < n_quads * kQuad; ++r) {
      // The same place a tile on, which the next tile reads: an expert's rows are 1-2 KB, too
      // short for the hardware prefetcher, and a batched decode step (a few tokens per
      // expert) was bound by the misses.
      const uint8_t* ahead = ref[r].weight + k0 * rb / in + kTileRows * rb;
      for (size_t b = 0; b < block_bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T1);
      for (int k = 0; k < len; k += kValues<F>) decode_piece<F>(ref[r], k0 + k, wv[r] + k / 8);
      scale[r] = chain_scale<F>(w, ref[r], k0);
    }
    for (int q = 0; q < n_quads * kQuad; q += kQuad) {
      const auto* wq = wv + q;
      int t = t0;
      for (; t + kGroup <= t1; t += kGroup)
        group<kGroup>(x, n, k0, nv, wq, sa, n_act_blocks, scale + q, t, &total[t - t0][q]);
      for (; t + 2 <= t1; t += 2)
        group<2>(x, n, k0, nv, wq, sa, n_act_blocks, scale + q, t, &total[t - t0][q]);
      for (; t < t1; ++t)
        group<1>(x, n, k0, nv, wq, sa, n_act_blocks, scale + q, t, &total[t - t0][q]);
    }
  }
  for (int t = t0; t < t1; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t) * rows + r0 + r] = hsum(total[t - t0][r]);
}

// A few tokens of FP8 / FP4 weights (a batched decode step: each expert sees 1-3 of them):
// kFewRows rows streamed from memory as in the GEMV (prefetched, decoded in registers), each
// decoded piece used for kN tokens [t0, t0 + kN), whose inputs (the GEMM's packed layout) come
// from L1. The chains are the GEMM's: one per (row, token) over a block's vectors in order, then
// total = fma(chain, block scale * input scale, total). The GEMM tile, which stages 16 decoded
// rows in L1 for up to 64 tokens, took 3x a 1-token GEMV's time for 2 tokens. Up to kFewMax
// tokens (bench_kernels' batched-decode shapes): FP8 [4096, 14336] 2.0 ms against the tile's
// 3.8 for 2 tokens, 4.1 against 5.1 for 4, 9.2 against 7.5 for 8; FP4 experts 10.6 against 16.2
// for 2, but 17.6 against 16.1 for 3 (its float decoder costs more than the FP8 one).
constexpr int kFewRows = 4, kFewTokens = 2, kFewMaxFp8 = 4, kFewMaxFp4 = 2;
template <WeightFormat F, int kN>
DSV4_AVX2 void gemv_few(const Linear& w, const float* x, int n, const float* sa, int n_act_blocks, int row_begin,
                        int rows, int r0, int t0, float* y) {
  constexpr int P = kValues<F>, V = P / 8, R = kFewRows;
  const int in = w.in;
  const size_t rb = row_bytes(w);
  const size_t block_bytes = rb * 128 / in;
  RowRef ref[R];
  for (int r = 0; r < R; ++r) ref[r] = row_ref(w, row_begin + std::min(r0 + r, rows - 1));
  __m256 total[R][kN];
  for (auto& tr : total)
    for (auto& t : tr) t = _mm256_setzero_ps();
  for (int k0 = 0; k0 < in; k0 += 128) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* ahead = ref[r].weight + k0 * rb / in + kGemvRows * rb;
      for (size_t b = 0; b < block_bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T1);
    }
    const float* xb = x + (static_cast<size_t>(k0 / 128) * n + t0) * 128;  // token t0 + g at xb + 128 g
    __m256 chain[R][kN];
    for (auto& cr : chain)
      for (auto& c : cr) c = _mm256_setzero_ps();
    for (int k = 0; k < 128; k += P) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        __m256 v[V];
        decode_piece<F>(ref[r], k0 + k, v);
#pragma GCC unroll 8
        for (int j = 0; j < V; ++j)
#pragma GCC unroll 4
          for (int g = 0; g < kN; ++g)
            chain[r][g] = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 128 * g + k + 8 * j), v[j], chain[r][g]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256 scale = chain_scale<F>(w, ref[r], k0);
      for (int g = 0; g < kN; ++g) {
        const __m256 s = _mm256_set1_ps(sa ? sa[static_cast<size_t>(t0 + g) * n_act_blocks + k0 / 128] : 1.0f);
        total[r][g] = _mm256_fmadd_ps(chain[r][g], _mm256_mul_ps(scale, s), total[r][g]);
      }
    }
  }
  for (int g = 0; g < kN; ++g)
    for (int r = 0; r < std::min(R, rows - r0); ++r) y[static_cast<size_t>(t0 + g) * rows + r0 + r] = hsum(total[r][g]);
}

template <WeightFormat F>
void run(const Linear& w, const float* x, const float* s, const Fp4Codes& codes, int n_act_blocks, int n,
         int row_begin, int rows, float* y) {
  if constexpr (F == WeightFormat::fp8 || F == WeightFormat::fp4) {
    if (n > 1 && n <= (F == WeightFormat::fp8 ? kFewMaxFp8 : kFewMaxFp4)) {
      // Row groups over the threads; each group's rows serve every token, kFewTokens at a time.
      pool().parallel_for(static_cast<size_t>((rows + kFewRows - 1) / kFewRows), [&](size_t g0, size_t g1) {
        for (size_t g = g0; g < g1; ++g)
          for (int t0 = 0; t0 < n; t0 += kFewTokens) {
            const int r0 = static_cast<int>(g) * kFewRows;
            if (n - t0 >= 2) gemv_few<F, 2>(w, x, n, s, n_act_blocks, row_begin, rows, r0, t0, y);
            else gemv_few<F, 1>(w, x, n, s, n_act_blocks, row_begin, rows, r0, t0, y);
          }
      });
      return;
    }
  }
  const auto one_token = [&](int r0) {
    if constexpr (F == WeightFormat::fp4) gemv_fp4(w, x, s, codes, row_begin, rows, r0, y);
    else gemv<F>(w, x, s, row_begin, rows, r0, y);
  };
  for_each_tile(n, rows, kGemvRows, kTileRows, kTokens, one_token, [&](int r0, int t0, int t1) {
    gemm_tile<F>(w, x, n, s, n_act_blocks, row_begin, rows, r0, t0, t1, y);
  });
}

// One block of FP8 inputs times factor, in kFp8Order: per 16, the even inputs, then the odd.
DSV4_AVX2 void fp8_inputs(const float* x, float factor, float* dst) {
  const __m256 f = _mm256_set1_ps(factor);
  for (int i = 0; i < 128; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> qwords (0, 2, 1, 3): a0 a2 a4 a6 b0 b2 b4 b6; odd likewise.
    const __m256 even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    const __m256 odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(even, f));
    _mm256_storeu_ps(dst + i + 8, _mm256_mul_ps(odd, f));
  }
}

// Token t of xq [n, in] into the layout the kernels read: block by block ([in / 128][n][128],
// the last block zero-padded), so a tile's tokens lie side by side instead of `in` floats
// apart (a multiple of 4 KiB for the usual widths, which maps them all to the same L1 sets),
// and in the decoders' order within a piece.
//
// FP4 inputs take the factor a (fp4_avx2.h) and their block scales (sa or 1) become s / (2a);
// returns a.
float fp4_input_scales(const float* sa, int n_blocks, float* scales) {
  const float a = sa ? fp4_avx2::kNarrow : 1.0f;
  for (int kb = 0; kb < n_blocks; ++kb) scales[kb] = (sa ? sa[kb] : 1.0f) / (2 * a);
  return a;
}

// The kernels' input scales (scales [n, n_act_blocks], from sa or 1 when the input is not
// quantized) absorb what the decoders leave out, exactly:
//   FP8 weights decode to w * 2^-120: the token's inputs take 2^K, the largest power that keeps
//   every input finite (at most 2^119), and its block scales 2^(120 - K). Both factors are
//   exact, so the sums round as those of x * w would.
//   FP4 weights decode to 2w and the inputs take a (fp4_avx2.h): the scales 1 / (2a).
void pack_token(const Linear& w, const float* xq, const float* sa, int n_act_blocks, int n, size_t t, float* packed,
                float* scales) {
  const float* row = xq + t * w.in;
  float factor = 1.0f;
  if (w.format == WeightFormat::fp4)
    factor = fp4_input_scales(sa ? sa + t * n_act_blocks : nullptr, n_act_blocks, scales + t * n_act_blocks);
  if (w.format == WeightFormat::fp8) {
    const float most = max_magnitude_avx2(row, w.in);
    int e = 0;
    std::frexp(most, &e);
    const int K = std::isfinite(most) ? std::min(119, 127 - e) : 0;
    factor = std::ldexp(1.0f, K);
    for (int kb = 0; kb < n_act_blocks; ++kb)
      scales[t * n_act_blocks + kb] = std::ldexp(sa ? sa[t * n_act_blocks + kb] : 1.0f, 120 - K);
  }
  for (int kb = 0; kb < (w.in + 127) / 128; ++kb) {
    const float* src = row + kb * 128;
    float* dst = packed + (static_cast<size_t>(kb) * n + t) * 128;
    if (w.format == WeightFormat::fp8) {
      fp8_inputs(src, factor, dst);
    } else if (w.format == WeightFormat::fp4) {
      fp4_avx2::to_floats(src, factor, dst);
    } else {
      const int len = std::min(128, w.in - kb * 128);
      std::copy_n(src, len, dst);
      std::fill(dst + len, dst + 128, 0.0f);  // the last block's padding
    }
  }
}

// A single token for gemv_fp4: per block, the Fp4Codes when it is narrow (only quantized inputs
// can be), the packed floats otherwise, and the scales of pack_token.
void pack_fp4_token(const float* row, int in, const float* sa, float* packed, float* scales, int16_t* x,
                    int32_t* bias, uint8_t* narrow) {
  const float a = fp4_input_scales(sa, in / 128, scales);
  for (int kb = 0; kb < in / 128; ++kb) {
    const float* src = row + kb * 128;
    narrow[kb] = sa && fp4_avx2::to_codes(src, a, x + kb * 128, bias + kb * 8);
    if (!narrow[kb]) fp4_avx2::to_floats(src, a, packed + kb * 128);
  }
}

}  // namespace

bool linear_avx2_supported() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool linear_avx2_handles(const Linear& w) {
  // fp8 / fp4 rows are whole 128-blocks (the config guarantees it for every quantized layer);
  // float rows need a multiple of 16.
  if (w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4) return w.in % 128 == 0;
  return w.in % 16 == 0;
}

void linear_avx2(const Linear& w, const float* xq, const float* sa, int n_act_blocks, bool quantize_input, int n,
                 int row_begin, int rows, float* y) {
  const float* x = xq;
  const float* s = quantize_input ? sa : nullptr;
  // One token of float weights is already in the packed layout (the GEMV reads no padding).
  const bool quantized = w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4;
  Fp4Codes codes{};
  if (n > 1 || quantized) {
    const std::span<float> packed = scratch<float>(Scratch::kernel_inputs, static_cast<size_t>((w.in + 127) / 128) * n * 128);
    const std::span<float> scales =
        scratch<float>(Scratch::kernel_scales, quantized ? static_cast<size_t>(n) * n_act_blocks : 0);
    const auto pack = [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) pack_token(w, xq, s, n_act_blocks, n, t, packed.data(), scales.data());
    };
    if (n == 1 && w.format == WeightFormat::fp4) {
      const std::span<int16_t> xi = scratch<int16_t>(Scratch::kernel_codes, w.in);
      const std::span<int32_t> bias = scratch<int32_t>(Scratch::kernel_sums, static_cast<size_t>(n_act_blocks) * 8);
      const std::span<uint8_t> narrow = scratch<uint8_t>(Scratch::kernel_flags, n_act_blocks);
      pack_fp4_token(xq, w.in, s, packed.data(), scales.data(), xi.data(), bias.data(), narrow.data());
      codes = {xi.data(), bias.data(), narrow.data()};
    } else if (n > 1) {
      pool().parallel_for(static_cast<size_t>(n), pack);
    } else {
      pack(0, 1);
    }
    x = packed.data();
    if (quantized) s = scales.data();
  }
  switch (w.format) {
    case WeightFormat::fp8: return run<WeightFormat::fp8>(w, x, s, codes, n_act_blocks, n, row_begin, rows, y);
    case WeightFormat::fp4: return run<WeightFormat::fp4>(w, x, s, codes, n_act_blocks, n, row_begin, rows, y);
    case WeightFormat::bf16: return run<WeightFormat::bf16>(w, x, s, codes, n_act_blocks, n, row_begin, rows, y);
    case WeightFormat::f32: return run<WeightFormat::f32>(w, x, s, codes, n_act_blocks, n, row_begin, rows, y);
  }
}

}  // namespace dsv4
