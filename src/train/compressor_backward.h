// Backward of the compressor over whole sequences from position 0 (training): kv = wkv x,
// score = wgate x + ape[slot], each completed block pooled (per dimension, a softmax over its
// rows; ratio 4 overlaps the previous block's first half), RMSNorm, RoPE at the block's first
// position — model/compressor.cpp's forward in smooth mode, for float weights.
#pragma once

#include <span>
#include <vector>

#include "model/kv_cache.h"
#include "model/weights.h"
#include "train/segments.h"

namespace dsv4 {

class Rope;

struct CompressorF32 {
  int ratio = 0, head_dim = 0, dim = 0;
  bool overlap = false;
  std::vector<float> ape;         // [ratio, width]
  std::vector<float> wkv, wgate;  // [width, dim]
  std::vector<float> norm;        // [head_dim]
  int width() const { return (overlap ? 2 : 1) * head_dim; }
};

// The projections of every row the backward starts from, as compressor_project gives them:
// kv = wkv x and score = wgate x, [rows, width] each (the ape of each token's slot is added where
// a block reads its scores, as compressor_absorb adds it).
struct CompressorTape {
  std::vector<float> kv, score;
};

// The forward, model/compressor.h's own (one projection of all rows, then each sequence
// absorbed from position 0 into plain float entries) on a view of c (train/master_views.h):
// the entries of every complete block of x [rows, dim], sequence after sequence (sequence s's
// len / ratio of them from seg.entry_start(s, ratio)), [seg.entries(ratio), head_dim]; with
// tape, keeps the projections; with states, leaves each sequence's entries in its state too,
// as an inference cache holds them (the indexer's choice reads its keys so).
std::vector<float> compressor_forward_f32(const CompressorWeights& w, const Rope& rope, float norm_eps,
                                          std::span<const float> x, const Segments& seg,
                                          CompressorTape* tape = nullptr,
                                          std::vector<CompressorState>* states = nullptr);

// x [rows, dim], dentries [seg.entries(ratio), head_dim] (the gradient of each entry) -> dx
// [rows, dim] (overwritten); g accumulates ape, wkv, wgate and norm gradients. From the forward's tape of
// the same x, or (none given) projecting again: the same bits.
void compressor_backward(const CompressorF32& c, const Rope& rope, float norm_eps, std::span<const float> x,
                         const Segments& seg, std::span<const float> dentries, CompressorF32& g, std::span<float> dx,
                         const CompressorTape* tape = nullptr);

}  // namespace dsv4
