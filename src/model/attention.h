// Attention of one layer: low-rank q (wq_a -> q_norm -> wq_b, per-head RMS), one shared kv
// head (key = value) over a sliding window plus, by the layer's compress ratio, nothing (0),
// indexer-chosen compressed entries (4, CSA) or every complete compressed entry (HCA); an
// attention sink per head; inverse RoPE on the output; grouped low-rank output wo_a -> wo_b.
#pragma once

#include <span>

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

// One session: x [n, dim] at positions pos0 .. pos0 + n - 1.
void attention_forward(const AttentionWeights& w, int compress_ratio, const ModelConfig& c,
                       const Rope& rope, std::span<const float> x, int n, long long pos0,
                       bool act_quant, LayerCache& cache, std::span<float> out);

}  // namespace dsv4
