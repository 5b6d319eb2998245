// Attention of one layer: low-rank q (wq_a -> q_norm -> wq_b, per-head RMS), one shared kv
// head (key = value) over a sliding window plus, by the layer's compress ratio, nothing (0),
// indexer-chosen compressed entries (4, CSA) or every complete compressed entry (HCA); an
// attention sink per head; inverse RoPE on the output; grouped low-rank output wo_a -> wo_b.
#pragma once

#include <span>
#include <vector>

#include "io/config.h"
#include "model/segment.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

// act_quant decides the storage: packed rows when the rounding is on, float32 when off.
void layer_cache_init(const BlockWeights& b, const ModelConfig& c, bool act_quant, LayerCache& cache);

// x: [N, dim] (attn_norm output) of a step's rows, which segs divide among sessions (each
// segment's cache is this layer's) -> out: [N, dim]. The projections run once over all rows.
void attention_forward(const AttentionWeights& w, int compress_ratio, const ModelConfig& c,
                       const Rope& rope, std::span<const float> x, std::span<const Segment> segs,
                       bool act_quant, std::span<float> out);

// The pieces of attention_forward, for the DSpark stages (model/dspark.h), which attend to
// other keys:
// q path: qr [n, q_lora_rank] (the indexer's input), q [n, H, D] (per-head RMS, RoPE at pos);
// kv [n, D] (kv_norm, RoPE at pos, non-rope dims FP8-rounded when act_quant).
// saved (training; null in inference) keeps what the backward starts from: each projection
// before its norm, and attention_output's low-rank rows.
struct AttentionSaved {
  std::vector<float> qa, qb, kva;  // wq_a x [n, q_lora], wq_b qr [n, H * D], wkv x [n, D]
  std::vector<float> low;          // the grouped wo_a's output [n, G * R]
};
void attention_project(const AttentionWeights& w, const ModelConfig& c, const Rope& rope, std::span<const float> x,
                       std::span<const long long> pos, bool act_quant, std::vector<float>& qr, std::vector<float>& q,
                       std::vector<float>& kv, AttentionSaved* saved = nullptr);
void attention_kv(const AttentionWeights& w, const ModelConfig& c, const Rope& rope, std::span<const float> x,
                  std::span<const long long> pos, bool act_quant, std::vector<float>& kv,
                  AttentionSaved* saved = nullptr);
// Heads [h0, h1) of one token at position pos: q [H, D] over keys (each a [D] row, key =
// value) with the per-head attention sink -> o [H, D] (rows h0 .. h1 - 1, inverse RoPE applied).
// scores and sums are scratch.
void attend_heads(const float* q, int h0, int h1, std::span<const float* const> keys, int D, float scale,
                  std::span<const float> attn_sink, const Rope& rope, long long pos, std::vector<float>& scores,
                  std::vector<float>& sums, float* o);
// o [n, H, D] -> out [n, dim]: grouped wo_a, then wo_b (and the ranks' parts combined).
void attention_output(const AttentionWeights& w, const ModelConfig& c, std::span<const float> o, int n, bool act_quant,
                      std::span<float> out, AttentionSaved* saved = nullptr);

// One session: x [n, dim] at positions pos0 .. pos0 + n - 1.
void attention_forward(const AttentionWeights& w, int compress_ratio, const ModelConfig& c,
                       const Rope& rope, std::span<const float> x, int n, long long pos0,
                       bool act_quant, LayerCache& cache, std::span<float> out);

}  // namespace dsv4
