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
// Decoding is what limits a GEMV, so weights become bf16 by table lookups in registers, in
// whatever lane order the lookups produce: e4m3 by two vpermi2b over 128-entry tables (the low
// and the high byte of each magnitude's bf16, sign or'ed in), e2m1 by vpshufb over 16-entry
// tables; vpunpck{l,h}bw then interleave low and high bytes in 128-bit lanes. The inputs are
// converted to bf16 once per call in the same permuted order (kFp8Order / kFp4Order), so every
// product pairs the right weight with the right input. For e2m1 each 128-bit lane stays inside
// one 32-wide scale block, so four scales per 128 multiply lane groups.
//
// The inputs carry their block's activation scale sa (x sa, still exact in bf16: sa is a power of
// two, and x sa stays a normal number, at least 2^-31 as sa >= 2^-22, and finite unless the input
// is within 7% of float's largest value). That takes a multiply per row and block out of the
// kernels (6% of the FP4 GEMV) and changes no bit: every product and partial sum is the unscaled
// one times sa exactly, so no vdpbf16ps operand or result is ever subnormal (which it flushes).
//
// Per (row, token) and 128-wide block, one order shared by the GEMV and the GEMM kernels
// (accumulate()): FP8: two vdpbf16ps chains (pieces 0, 2 and 1, 3), then
// total = fma(a + b, sb, total); FP4: one chain over the four pieces,
// total = fma(piece, sb[lane group], total). A final 16-lane reduction in a fixed tree.
#include <cpuid.h>

#include <algorithm>
#include <array>
#include <span>

#include "core/scratch.h"
#include "core/thread_pool.h"
#include "quant/avx512_decode.h"
#include "quant/linear_kernels.h"

namespace dsv4 {

namespace {

using namespace avx512;

constexpr int kRows = 4;     // GEMM: weight rows decoded per step
constexpr int kTokens = 16;  // tokens sharing one decoded 4 x 128 weight tile (GEMM)
// GEMV rows in flight, and its prefetch distance (the same place kGemvRows rows on): with 4, a
// decode step on the flash-6l synth takes 3-6% longer (same-process A/B); prefetching 16 rows
// ahead instead of 8 made no difference.
constexpr int kGemvRows = 8;
constexpr int kGemmPrefetchRows = 8;  // two tiles on

// The one accumulation order of a (row, token, 128-block); scale: sb (per lane group for FP4).
template <bool kFp4>
DSV4_AVX512 inline void accumulate(const __m512i w[4], const __m512i x[4], __m512 scale, __m512& total) {
  if constexpr (kFp4) {
    __m512 piece = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[0], (__m512bh)x[0]);
    for (int j = 1; j < 4; ++j) piece = _mm512_dpbf16_ps(piece, (__m512bh)w[j], (__m512bh)x[j]);
    total = _mm512_fmadd_ps(piece, scale, total);
  } else {
    __m512 a = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[0], (__m512bh)x[0]);
    __m512 b = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[1], (__m512bh)x[1]);
    a = _mm512_dpbf16_ps(a, (__m512bh)w[2], (__m512bh)x[2]);
    b = _mm512_dpbf16_ps(b, (__m512bh)w[3], (__m512bh)x[3]);
    total = _mm512_fmadd_ps(_mm512_add_ps(a, b), scale, total);
  }
}

template <bool kFp4>
DSV4_AVX512 inline const uint8_t* weight_at(const Linear& w, int row, int k0) {
  if constexpr (kFp4) return w.weight + (static_cast<size_t>(row) * w.in + k0) / 2;
  else return w.weight + static_cast<size_t>(row) * w.in + k0;
}

template <bool kFp4>
DSV4_AVX512 inline void decode(const Decoder& d, const Linear& w, int row, int k0, __m512i out[4]) {
  if constexpr (kFp4) d.fp4(weight_at<kFp4>(w, row, k0), out);
  else d.fp8(weight_at<kFp4>(w, row, k0), out);
}

template <bool kFp4>
DSV4_AVX512 inline __m512 block_scale(const Decoder& d, const Linear& w, int row, int k0) {
  if constexpr (kFp4) return d.fp4_scales(w, row, k0);
  else return _mm512_set1_ps(w.scale_at(row, k0));
}

// One token: kGemvRows rows at a time, each weight byte decoded in registers and used once.
// Rows past the end repeat the last one (computed, not stored). Each row's weights and scales
// are found once per call, not per block.
template <bool kFp4>
DSV4_AVX512 void gemv(const Linear& w, const uint16_t* xb, int row_begin, int rows, int r0, float* y) {
  const Decoder d;
  const size_t row_bytes = kFp4 ? w.in / 2 : w.in;
  const uint8_t* weights[kGemvRows];
  int row[kGemvRows];
  for (int r = 0; r < kGemvRows; ++r) {
    row[r] = row_begin + std::min(r0 + r, rows - 1);
    weights[r] = w.weight + static_cast<size_t>(row[r]) * row_bytes;
  }
  __m512 total[kGemvRows];
  for (auto& t : total) t = _mm512_setzero_ps();
  for (int k0 = 0; k0 < w.in; k0 += 128) {
    __m512i x[4];
    for (int j = 0; j < 4; ++j) x[j] = _mm512_loadu_si512(xb + k0 + 32 * j);
    const size_t at = kFp4 ? k0 / 2 : k0;
    for (int r = 0; r < kGemvRows; ++r) {
      __m512i wr[4];
      // The same place kGemvRows rows on, which the next call reads (rows are contiguous): short
      // rows give the hardware prefetcher too little to go on.
      const uint8_t* ahead = weights[r] + at + kGemvRows * row_bytes;
      _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T1);
      if constexpr (!kFp4) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T1);
      if constexpr (kFp4) d.fp4(weights[r] + at, wr);
      else d.fp8(weights[r] + at, wr);
      accumulate<kFp4>(wr, x, block_scale<kFp4>(d, w, row[r], k0), total[r]);
    }
  }
  for (int r = 0; r < std::min(kGemvRows, rows - r0); ++r) y[r0 + r] = hsum16(total[r]);
}

// A few tokens (a batched decode step: each expert sees 1-4 of them): kFewRows rows from
// memory as in the GEMV (prefetched, decoded in registers), each decoded block used for kN
// tokens [t0, t0 + kN) whose inputs come from L1. The tile below keeps every token's sums in
// memory and paid for it: a 2-token product took as long as two 1-token ones.
// Up to kFewMax tokens: FP4 weights, whose decoding costs more per byte, gain up to 16 tokens
// (16 tokens: 614 us against the tile's 710 for a [2048, 4096] matrix); FP8 ones only up to 3
// (at 8, 4.0 ms against 2.9 for [4096, 14336]). bench_kernels' batched-decode shapes.
// kFewRows rows in flight, kFewTokens tokens per decoded row: 2 rows with 8 tokens' sums in
// registers ran FP4 experts at 8 tokens 2x slower, FP8 [4096, 14336] 1.3x.
constexpr int kFewRows = 4, kFewTokens = 3, kFewMaxFp4 = 16, kFewMaxFp8 = 3;
template <bool kFp4, int kN, int kR>  // kN tokens, kR rows
DSV4_AVX512 void gemv_few(const Linear& w, const uint16_t* xb, int row_begin, int rows, int r0, int t0, float* y) {
  const Decoder d;
  const size_t row_bytes = kFp4 ? w.in / 2 : w.in;
  const uint8_t* weights[kR];
  int row[kR];
  for (int r = 0; r < kR; ++r) {
    row[r] = row_begin + std::min(r0 + r, rows - 1);
    weights[r] = w.weight + static_cast<size_t>(row[r]) * row_bytes;
  }
  __m512 total[kR][kN];
  for (auto& tr : total)
    for (auto& t : tr) t = _mm512_setzero_ps();
  const uint16_t* x0 = xb + static_cast<size_t>(t0) * w.in;
  for (int k0 = 0; k0 < w.in; k0 += 128) {
    const size_t at = kFp4 ? k0 / 2 : k0;
    for (int r = 0; r < kR; ++r) {
      const uint8_t* ahead = weights[r] + at + kGemvRows * row_bytes;
      _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T1);
      if constexpr (!kFp4) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T1);
      __m512i wr[4];
      if constexpr (kFp4) d.fp4(weights[r] + at, wr);
      else d.fp8(weights[r] + at, wr);
      const __m512 scale = block_scale<kFp4>(d, w, row[r], k0);
      for (int t = 0; t < kN; ++t) {
        __m512i x[4];
        for (int j = 0; j < 4; ++j) x[j] = _mm512_loadu_si512(x0 + static_cast<size_t>(t) * w.in + k0 + 32 * j);
        accumulate<kFp4>(wr, x, scale, total[r][t]);
      }
    }
  }
  const int nr = std::min(kR, rows - r0);
  for (int t = 0; t < kN; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t0 + t) * rows + r0 + r] = hsum16(total[r][t]);
}

// Tokens [t0, t1): kRows rows' 128-blocks decoded into registers once and used for every
// token, whose 4 input vectors are loaded once and used for every row. Loads are what bound
// these kernels (about one 64-byte load a cycle here, against two vdpbf16ps): with the decoded
// rows in memory, every vdpbf16ps loaded its weights and a step ran at half the rate.
template <bool kFp4>
DSV4_AVX512 void gemm_tile(const Linear& w, const uint16_t* xb, int row_begin, int rows, int r0, int t0, int t1,
                           float* y) {
  const Decoder d;
  const int in = w.in;
  int row[kRows];
  for (int r = 0; r < kRows; ++r) row[r] = row_begin + std::min(r0 + r, rows - 1);
  __m512 total[kTokens][kRows];
  for (int t = 0; t < t1 - t0; ++t)
    for (int r = 0; r < kRows; ++r) total[t][r] = _mm512_setzero_ps();
  alignas(64) __m512 scale[kRows];
  const size_t ahead = static_cast<size_t>(kGemmPrefetchRows) * (kFp4 ? in / 2 : in);
  for (int k0 = 0; k0 < in; k0 += 128) {
    __m512i wr[kRows][4];
    for (int r = 0; r < kRows; ++r) {
      // The same place kGemmPrefetchRows rows on, which the tiles after this one read: an
      // expert's rows are 1-2 KB, too short for the hardware prefetcher to ramp up on, and a
      // batched decode step (a few tokens per expert) was bound by the misses.
      const char* next = reinterpret_cast<const char*>(weight_at<kFp4>(w, row[r], k0) + ahead);
      _mm_prefetch(next, _MM_HINT_T1);
      if constexpr (!kFp4) _mm_prefetch(next + 64, _MM_HINT_T1);
      decode<kFp4>(d, w, row[r], k0, wr[r]);
      scale[r] = block_scale<kFp4>(d, w, row[r], k0);
    }
    for (int t = t0; t < t1; ++t) {
      __m512i x[4];
      const uint16_t* xt = xb + static_cast<size_t>(t) * in + k0;
      for (int j = 0; j < 4; ++j) x[j] = _mm512_loadu_si512(xt + 32 * j);
      // In registers, not folded into each row's vdpbf16ps as a memory operand (4 loads a
      // row instead of 4 a token).
      asm("" : "+v"(x[0]), "+v"(x[1]), "+v"(x[2]), "+v"(x[3]));
      for (int r = 0; r < kRows; ++r) accumulate<kFp4>(wr[r], x, scale[r], total[t - t0][r]);
    }
  }
  const int nr = std::min(kRows, rows - r0);
  for (int t = t0; t < t1; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t) * rows + r0 + r] = hsum16(total[t - t0][r]);
}

// Where to_bf16 takes each output word from, per decoder order: output vector v, word j takes
// input order[32 v + j], a word of the (0, 1) pair of input vectors (index % 64) or, where
// from_high has bit j, of the (2, 3) pair.
struct WordGather {
  alignas(64) std::array<uint16_t, 128> index;
  std::array<uint32_t, 4> from_high;
};
constexpr WordGather word_gather(const Order& order) {
  WordGather g{};
  for (int p = 0; p < 128; ++p) {
    g.index[p] = static_cast<uint16_t>(order[p] % 64);
    if (order[p] >= 64) g.from_high[p / 32] |= 1u << (p % 32);
  }
  return g;
}
constexpr WordGather kFp8Gather = word_gather(kFp8Order), kFp4Gather = word_gather(kFp4Order);

// A token's blocks of 128 inputs times their scales s, as bf16 in the decoder's order: exact,
// as they are e4m3 values times powers of two (so vcvtne2ps2bf16 rounds nothing). Vector code,
// on all threads for a batch: the scalar loop on one thread cost a 512-token FP8 GEMM 15%.
DSV4_AVX512 void to_bf16(const float* x, const float* s, int n_blocks, const WordGather& gather, uint16_t* xb) {
  __m512i idx[4];
  for (int v = 0; v < 4; ++v) idx[v] = _mm512_load_si512(gather.index.data() + 32 * v);
  for (int b = 0; b < n_blocks; ++b) {
    const float* xs = x + 128 * b;
    const __m512 scale = _mm512_set1_ps(s[b]);
    __m512i in[4];  // words 32 i .. 32 i + 31 of the block
    for (int i = 0; i < 4; ++i)
      in[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(xs + 32 * i + 16), scale),
                                           _mm512_mul_ps(_mm512_loadu_ps(xs + 32 * i), scale));
    for (int v = 0; v < 4; ++v) {
      const __m512i low = _mm512_permutex2var_epi16(in[0], idx[v], in[1]);
      const __m512i high = _mm512_permutex2var_epi16(in[2], idx[v], in[3]);
      _mm512_storeu_si512(xb + 128 * b + 32 * v, _mm512_mask_mov_epi16(low, gather.from_high[v], high));
    }
  }
}

template <bool kFp4>
void run(const Linear& w, const uint16_t* xb, int n, int row_begin, int rows, float* y) {
  if (n > 1 && n <= (kFp4 ? kFewMaxFp4 : kFewMaxFp8)) {
    // Row groups over the threads; each group's rows serve every token, kFewTokens at a time
    // (the rows, in L1 by then, decoded again for each group of tokens).
    pool().parallel_for(static_cast<size_t>((rows + kFewRows - 1) / kFewRows), [&](size_t g0, size_t g1) {
      for (size_t g = g0; g < g1; ++g) {
        const int r0 = static_cast<int>(g) * kFewRows;
        for (int t0 = 0; t0 < n; t0 += kFewTokens) {
          switch (std::min(kFewTokens, n - t0)) {
            case 1: gemv_few<kFp4, 1, kFewRows>(w, xb, row_begin, rows, r0, t0, y); break;
            case 2: gemv_few<kFp4, 2, kFewRows>(w, xb, row_begin, rows, r0, t0, y); break;
            default: gemv_few<kFp4, 3, kFewRows>(w, xb, row_begin, rows, r0, t0, y); break;
          }
        }
      }
    });
    return;
  }
  for_each_tile(
      n, rows, kGemvRows, kRows, kTokens, [&](int r0) { gemv<kFp4>(w, xb, row_begin, rows, r0, y); },
      [&](int r0, int t0, int t1) { gemm_tile<kFp4>(w, xb, row_begin, rows, r0, t0, t1, y); });
}

// F16C (CPUID leaf 1, ECX bit 29) asked of cpuid itself: clang's __builtin_cpu_supports does
// not know the name.
bool cpu_has_f16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
}

}  // namespace

bool linear_avx512_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
         __builtin_cpu_supports("avx512vbmi") && cpu_has_f16c();
}

bool linear_avx512_handles(const Linear& w, bool quantize_input) {
  return quantize_input && (w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4) && w.in % 128 == 0;
}

void linear_avx512(const Linear& w, const float* xq, const float* sa, int n_act_blocks, int n, int row_begin,
                   int rows, float* y) {
  // The inputs times their block's scale as bf16 (exact: e4m3 values times a power of two), in
  // the order the weight decoder produces.
  const bool fp4 = w.format == WeightFormat::fp4;
  const WordGather& gather = fp4 ? kFp4Gather : kFp8Gather;
  const std::span<uint16_t> xb = scratch<uint16_t>(Scratch::kernel_inputs, static_cast<size_t>(n) * w.in);
  const auto pack = [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      to_bf16(xq + t * w.in, sa + t * n_act_blocks, w.in / 128, gather, xb.data() + t * w.in);
  };
  if (n > 1) pool().parallel_for(static_cast<size_t>(n), pack);  // a prefill's worth
  else pack(0, 1);
  if (fp4) run<true>(w, xb.data(), n, row_begin, rows, y);
  else run<false>(w, xb.data(), n, row_begin, rows, y);
}

}  // namespace dsv4
