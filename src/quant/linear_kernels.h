// The fast bodies of linear() and how linear.cpp chooses among them (internal to src/quant).
#pragma once

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "quant/linear.h"

namespace dsv4 {

// How every kernel spreads a call over the threads. One token: gemv(r0) for row groups of
// gemv_rows. Several: tile(r0, t0, t1) for tiles of tile_rows x tile_tokens, row tiles inside
// token tiles, so that a token tile's inputs stay in L2 while the weights stream past (the
// other order re-reads all the inputs from memory for every few rows).
template <typename Gemv, typename Tile>
void for_each_tile(int n, int rows, int gemv_rows, int tile_rows, int tile_tokens, const Gemv& gemv, const Tile& tile) {
  if (n == 1) {
    pool().parallel_for(static_cast<size_t>((rows + gemv_rows - 1) / gemv_rows), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) gemv(static_cast<int>(i) * gemv_rows);
    });
    return;
  }
  const size_t n_row_tiles = (rows + tile_rows - 1) / tile_rows, n_token_tiles = (n + tile_tokens - 1) / tile_tokens;
  pool().parallel_for(n_row_tiles * n_token_tiles, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const int t0 = static_cast<int>(i / n_row_tiles) * tile_tokens;
      tile(static_cast<int>(i % n_row_tiles) * tile_rows, t0, std::min(n, t0 + tile_tokens));
    }
  });
}

// As for_each_tile for several tokens, the inputs also cut into chunks of k_chunk (a multiple
// of 128) so that a token tile's chunk of inputs stays in L1 while the rows of a panel of
// kPanelTiles row tiles pass: with every input re-read from L2 for each row tile, 8 tokens of
// wo_a ([1024, 4096] on float inputs, 128 KB of them) ran at a third of the FMA rate. A tile's
// sums carry over the chunks in acc (tile_rows x tile_tokens vectors, in the tile's layout):
// tile(r0, t0, t1, k0, k1, acc, first, last) starts them at zero when first and writes y when
// last, so each (row, token) still sums its 128-blocks in order, as unchunked.
struct alignas(64) SumVector {  // a tile's carried sum: one 16-float vector, as its kernel sees it
  float lanes[16];
};
template <typename Tile>
void for_each_chunked_tile(int n, int rows, int in, int k_chunk, int tile_rows, int tile_tokens, const Tile& tile) {
  constexpr int kPanelTiles = 8;
  const int panel_rows = kPanelTiles * tile_rows;
  const size_t n_panels = (rows + panel_rows - 1) / panel_rows, n_token_tiles = (n + tile_tokens - 1) / tile_tokens;
  const size_t acc_per_tile = static_cast<size_t>(tile_rows) * tile_tokens;
  pool().parallel_for(n_panels * n_token_tiles, [&](size_t i0, size_t i1) {
    std::vector<SumVector> acc(kPanelTiles * acc_per_tile);
    for (size_t i = i0; i < i1; ++i) {
      const int t0 = static_cast<int>(i / n_panels) * tile_tokens, t1 = std::min(n, t0 + tile_tokens);
      const int p0 = static_cast<int>(i % n_panels) * panel_rows, p1 = std::min(rows, p0 + panel_rows);
      for (int k0 = 0; k0 < in; k0 += k_chunk) {
        const int k1 = std::min(in, k0 + k_chunk);
        for (int r0 = p0, j = 0; r0 < p1; r0 += tile_rows, ++j)
          tile(r0, t0, t1, k0, k1, acc.data() + j * acc_per_tile, k0 == 0, k1 == in);
      }
    }
  });
}

bool linear_avx2_supported();                 // this CPU has AVX2 and FMA
bool linear_avx2_handles(const Linear& w);    // the kernel's shape constraints
// xq: [n, in] input (already quantized to unscaled e4m3 values when quantize_input), sa:
// [n, n_act_blocks] activation scales, y: [n, rows] for weight rows [row_begin, +rows).
void linear_avx2(const Linear& w, const float* xq, const float* sa, int n_act_blocks, bool quantize_input, int n,
                 int row_begin, int rows, float* y);

bool linear_avx512_supported();  // AVX512 F / BW / VL / BF16 / VBMI and F16C
// Only FP8 / FP4 weights with quantized inputs (on the bf16 grid), in % 128 == 0.
bool linear_avx512_handles(const Linear& w, bool quantize_input);
void linear_avx512(const Linear& w, const float* xq, const float* sa, int n_act_blocks, int n, int row_begin,
                   int rows, float* y);

// Float inputs (not on the bf16 grid): FP8 weights with unquantized inputs, BF16 and F32
// weights, in % 128 == 0; float FMAs. Same CPU requirements as linear_avx512.
bool linear_avx512_f32_handles(const Linear& w, bool quantize_input);
void linear_avx512_f32(const Linear& w, const float* x, int n, int row_begin, int rows, float* y);

}  // namespace dsv4
