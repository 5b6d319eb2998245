// The AVX-512 body of linear() for float inputs that are not on the bf16 grid: FP8 weights
// applied to unquantized inputs (wo_a, which the reference applies dequantized, and the smooth
// validation mode), BF16 weights (compressor, indexer weights_proj, head) and F32 weights (the
// trainer's float masters, whose every product goes through here). Weights are decoded to float
// in registers (e4m3 through the bf16 tables of avx512_decode.h, bf16 by a 16-bit shift; floats
// as they are) and multiplied with 16-lane float FMAs; the inputs are permuted once per call
// into the decoder's lane order.
//
// Per (row, token) and 128-wide block, one order shared by the GEMV and the GEMM kernels
// (accumulate()): eight 16-float pieces in two FMA chains (even and odd pieces), then
// total = fma(a + b, sb, total) with the block's weight scale (1 for bf16 and f32); a final 16-lane
// reduction in a fixed tree. As every path, it depends on nothing but the row and the token.
#include <algorithm>
#include <cstdlib>
#include <span>

#include "core/scratch.h"
#include "core/thread_pool.h"
#include "quant/avx512_decode.h"
#include "quant/linear_kernels.h"

namespace dsv4 {

namespace {

using namespace avx512;

constexpr int kRows = 4;      // GEMV rows in flight
constexpr int kTileRows = 2;  // GEMM rows held in registers (8 vectors each)
constexpr int kTokens = 16;
constexpr int kPrefetchRows = 8;  // GEMM: two tiles on

// Float position in a 128-block -> position of the bf16 vector it came from: piece i takes
// bf16 vector i / 2, words 8L + 4 (i % 2) + j of its 128-bit lane L (vpunpck{l,h}wd).
constexpr Order float_order(const Order& bf16_order) {
  Order o{};
  for (int p = 0; p < 128; ++p) {
    const int piece = p / 16, q = p % 16, lane = q / 4, j = q % 4;
    o[p] = bf16_order[32 * (piece / 2) + 8 * lane + 4 * (piece % 2) + j];
  }
  return o;
}

constexpr Order kIdentity = [] {
  Order o{};
  for (int p = 0; p < 128; ++p) o[p] = static_cast<uint8_t>(p);
  return o;
}();
constexpr Order kFp8FloatOrder = float_order(kFp8Order);
constexpr Order kBf16FloatOrder = float_order(kIdentity);

// Bytes per weight of the formats this file takes.
constexpr size_t bytes_per_weight(WeightFormat f) { return f == WeightFormat::f32 ? 4 : f == WeightFormat::bf16 ? 2 : 1; }

// 128 weights of a row -> 8 x 16 floats (unscaled e4m3 values, the bf16 values, or the floats).
template <WeightFormat kF>
DSV4_AVX512 inline void decode(const Decoder& d, const Linear& w, int row, int k0, __m512 out[8]) {
  if constexpr (kF == WeightFormat::f32) {
    const float* p = reinterpret_cast<const float*>(w.weight) + static_cast<size_t>(row) * w.in + k0;
    for (int i = 0; i < 8; ++i) out[i] = _mm512_loadu_ps(p + 16 * i);
    return;
  }
  __m512i v[4];
  if constexpr (kF == WeightFormat::bf16) {
    const uint8_t* p = w.weight + (static_cast<size_t>(row) * w.in + k0) * 2;
    for (int i = 0; i < 4; ++i) v[i] = _mm512_loadu_si512(p + 64 * i);
  } else {
    d.fp8(w.weight + static_cast<size_t>(row) * w.in + k0, v);
  }
  const __m512i zero = _mm512_setzero_si512();
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, v[i]));
    out[2 * i + 1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, v[i]));
  }
}

template <WeightFormat kF>
DSV4_AVX512 inline __m512 block_scale(const Linear& w, int row, int k0) {
  return _mm512_set1_ps(kF == WeightFormat::fp8 ? w.scale_at(row, k0) : 1.0f);
}

DSV4_AVX512 inline void accumulate(const __m512 w[8], const __m512 x[8], __m512 scale, __m512& total) {
  __m512 a = _mm512_mul_ps(w[0], x[0]), b = _mm512_mul_ps(w[1], x[1]);
  for (int i = 2; i < 8; i += 2) {
    a = _mm512_fmadd_ps(w[i], x[i], a);
    b = _mm512_fmadd_ps(w[i + 1], x[i + 1], b);
  }
  total = _mm512_fmadd_ps(_mm512_add_ps(a, b), scale, total);
}

template <WeightFormat kF>
DSV4_AVX512 void gemv(const Linear& w, const float* xp, int row_begin, int rows, int r0, float* y) {
  const Decoder d;
  int row[kRows];
  for (int r = 0; r < kRows; ++r) row[r] = row_begin + std::min(r0 + r, rows - 1);
  const size_t row_bytes = bytes_per_weight(kF) * w.in;
  __m512 total[kRows];
  for (auto& t : total) t = _mm512_setzero_ps();
  for (int k0 = 0; k0 < w.in; k0 += 128) {
    __m512 x[8];
    for (int i = 0; i < 8; ++i) x[i] = _mm512_loadu_ps(xp + k0 + 16 * i);
    for (int r = 0; r < kRows; ++r) {
      // Prefetch the same place kRows rows on (the next call's rows; see linear_avx512.cpp).
      const uint8_t* ahead = w.weight + static_cast<size_t>(row[r]) * row_bytes + k0 * (row_bytes / w.in) +
                             kRows * row_bytes;
      for (size_t b = 0; b < 128 * (row_bytes / w.in); b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T1);
      __m512 wr[8];
      decode<kF>(d, w, row[r], k0, wr);
      accumulate(wr, x, block_scale<kF>(w, row[r], k0), total[r]);
    }
  }
  for (int r = 0; r < std::min(kRows, rows - r0); ++r) y[r0 + r] = hsum16(total[r]);
}

// Tokens [t0, t1), inputs [k_begin, k_end): kTileRows rows' 128-blocks decoded into registers
// once and used for every token; each pair of the token's input vectors is loaded once and used
// for both rows. Loads are what bound it (about one 64-byte load a cycle here, against two
// FMAs): with the decoded rows in memory and each input folded into every FMA, 2 tokens took
// 2.6x one. The sums carry over input chunks in acc (for_each_chunked_tile).
template <WeightFormat kF>
DSV4_AVX512 void gemm_tile(const Linear& w, const float* xp, int row_begin, int rows, int r0, int t0, int t1,
                           int k_begin, int k_end, SumVector* acc, bool first, bool last, float* y) {
  const Decoder d;
  const int in = w.in;
  int row[kTileRows];
  for (int r = 0; r < kTileRows; ++r) row[r] = row_begin + std::min(r0 + r, rows - 1);
  __m512(*total)[kTileRows] = reinterpret_cast<__m512(*)[kTileRows]>(acc);
  if (first)
    for (int t = 0; t < t1 - t0; ++t)
      for (int r = 0; r < kTileRows; ++r) total[t][r] = _mm512_setzero_ps();
  const size_t row_bytes = bytes_per_weight(kF) * in;
  for (int k0 = k_begin; k0 < k_end; k0 += 128) {
    __m512 wr[kTileRows][8];
    __m512 scale[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
      // The same place kPrefetchRows rows on (tiles to come): a batched decode step's few
      // tokens give a tile too little work to hide its misses (see linear_avx512.cpp).
      const uint8_t* ahead = w.weight + static_cast<size_t>(row[r]) * row_bytes + k0 * (row_bytes / in) +
                             kPrefetchRows * row_bytes;
      for (size_t b = 0; b < 128 * (row_bytes / in); b += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T1);
      decode<kF>(d, w, row[r], k0, wr[r]);
      scale[r] = block_scale<kF>(w, row[r], k0);
    }
    for (int t = t0; t < t1; ++t) {
      const float* xt = xp + static_cast<size_t>(t) * in + k0;
      // accumulate()'s order, both rows at once.
      __m512 a[kTileRows], b[kTileRows];
      for (int i = 0; i < 8; i += 2) {
        __m512 xe = _mm512_loadu_ps(xt + 16 * i), xo = _mm512_loadu_ps(xt + 16 * i + 16);
        asm("" : "+v"(xe), "+v"(xo));  // in registers, not folded into each row's FMA
        for (int r = 0; r < kTileRows; ++r) {
          a[r] = i == 0 ? _mm512_mul_ps(wr[r][0], xe) : _mm512_fmadd_ps(wr[r][i], xe, a[r]);
          b[r] = i == 0 ? _mm512_mul_ps(wr[r][1], xo) : _mm512_fmadd_ps(wr[r][i + 1], xo, b[r]);
        }
      }
      for (int r = 0; r < kTileRows; ++r)
        total[t - t0][r] = _mm512_fmadd_ps(_mm512_add_ps(a[r], b[r]), scale[r], total[t - t0][r]);
    }
  }
  if (!last) return;
  const int nr = std::min(kTileRows, rows - r0);
  for (int t = t0; t < t1; ++t)
    for (int r = 0; r < nr; ++r) y[static_cast<size_t>(t) * rows + r0 + r] = hsum16(total[t - t0][r]);
}

template <WeightFormat kF>
void run(const Linear& w, const float* xp, int n, int row_begin, int rows, float* y) {
  if (n == 1) {
    pool().parallel_for(static_cast<size_t>((rows + kRows - 1) / kRows), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) gemv<kF>(w, xp, row_begin, rows, static_cast<int>(i) * kRows, y);
    });
    return;
  }
  // A token tile's chunk of float inputs: about 16 KB, half of L1.
  const int tokens = std::min(n, kTokens);
  const int k_chunk = std::max(128, (16384 / (4 * tokens)) / 128 * 128);
  for_each_chunked_tile(n, rows, w.in, k_chunk, kTileRows, kTokens,
                                [&](int r0, int t0, int t1, int k0, int k1, SumVector* acc, bool first, bool last) {
                                  gemm_tile<kF>(w, xp, row_begin, rows, r0, t0, t1, k0, k1, acc, first, last, y);
                                });
}

}  // namespace

bool linear_avx512_f32_handles(const Linear& w, bool quantize_input) {
  return ((w.format == WeightFormat::fp8 && !quantize_input) || w.format == WeightFormat::bf16 ||
          w.format == WeightFormat::f32) &&
         w.in % 128 == 0;
}

void linear_avx512_f32(const Linear& w, const float* x, int n, int row_begin, int rows, float* y) {
  // Float weights come in their own order: the inputs as they are.
  if (w.format == WeightFormat::f32) return run<WeightFormat::f32>(w, x, n, row_begin, rows, y);
  const bool bf16 = w.format == WeightFormat::bf16;
  const Order& order = bf16 ? kBf16FloatOrder : kFp8FloatOrder;
  const std::span<float> xp = scratch<float>(Scratch::kernel_inputs, static_cast<size_t>(n) * w.in);
  for (size_t b = 0; b < xp.size(); b += 128)
    for (int p = 0; p < 128; ++p) xp[b + p] = x[b + order[p]];
  if (bf16) run<WeightFormat::bf16>(w, xp.data(), n, row_begin, rows, y);
  else run<WeightFormat::fp8>(w, xp.data(), n, row_begin, rows, y);
}

}  // namespace dsv4
