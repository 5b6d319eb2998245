// The compressor: turns every `ratio` consecutive tokens of a layer into one kv entry by a
// learned softmax-gated pooling (per dimension), then RMSNorm and RoPE at the block's first
// position. Ratio 4 overlaps: an entry pools the first half-projection of the previous block's
// rows with the second half-projection of its own. The main compressor FP8-rounds the non-rope
// dims; the indexer's Hadamard-rotates and FP4-rounds the whole entry.
#pragma once

#include <span>

#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

// none: plain float entries (training, whose indexer leaves out the Hadamard rotation: a
// rotation of both queries and keys, it changes no score).
enum class CompressedRounding { fp8_nope, hadamard_fp4, none };

// entries: how s.entries stores them (f32, or the packed format of this compressor's rounding
// when act_quant is on); rope_dim: the float32 tail of fp8_nope rows.
void compressor_init(const CompressorWeights& w, KvFormat entries, int rope_dim, CompressorState& s);

// Feeds n tokens at positions pos0 .. pos0 + n - 1; x: [n, dim] (the attention input). Appends
// an entry to s.entries each time a block completes (packed: act_quant must be on for a packed
// format, else packing throws). The same as compressor_project then compressor_absorb.
void compressor_forward(const CompressorWeights& w, std::span<const float> x, int n, long long pos0,
                        const Rope& rope, float norm_eps, CompressedRounding rounding,
                        bool act_quant, CompressorState& s);

// The pooling of one block, per dimension d: entry[d] = sum_i softmax_i(score[:, d]) kv[i, d]
// over its n_rows rows (score [n_rows, dim] already includes ape; kv [n_rows, dim]), in float in
// row order. Training differentiates it (train/compressor_pool.h).
void compressor_pool(const float* score, const float* kv, int n_rows, int dim, float* entry);

// The two halves, for a batched step whose rows belong to several sessions: the projections
// kv and score [n, coff * head_dim] of rows x [n, dim], one GEMM for all sessions; then each
// session absorbs its rows (kv, score: its n rows of those) into its own state.
void compressor_project(const CompressorWeights& w, std::span<const float> x, int n, std::vector<float>& kv,
                        std::vector<float>& score);
void compressor_absorb(const CompressorWeights& w, const float* kv, const float* score, int n, long long pos0,
                       const Rope& rope, float norm_eps, CompressedRounding rounding, bool act_quant,
                       CompressorState& s);

}  // namespace dsv4
