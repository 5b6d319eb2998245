// The lightning indexer of CSA layers: scores every complete compressed block for each query
// token, score(b) = sum_h w[h] * relu(q[h] . k[b]), and picks the top index_topk blocks. Its
// queries and keys are Hadamard-rotated and FP4-rounded; its keys come from its own compressor.
#pragma once

#include <span>
#include <vector>

#include "io/config.h"
#include "model/kv_cache.h"
#include "model/segment.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

// x: [N, dim] attention input and qr: [N, q_lora_rank] (q_norm output) of a step's rows, which
// segs divide among sessions; pos: [N] each row's position in its session. Updates each
// session's indexer keys (cache->indexer), then returns per row the chosen block indices
// (ascending).
std::vector<std::vector<int>> indexer_forward(const IndexerWeights& w, const ModelConfig& c,
                                              std::span<const float> x, std::span<const float> qr,
                                              std::span<const Segment> segs, std::span<const long long> pos,
                                              const Rope& rope, bool act_quant);

// The choice itself, for one session's n tokens at pos0: q [n, ih, id] (the roped queries),
// weights [n, ih] (weights_proj x, scaled) and the session's keys -> chosen [n], each token's
// top index_topk blocks (ascending) among those complete at its position. Training calls it
// on its own plain-float queries and keys.
void indexer_choose(const ModelConfig& c, int ratio, int ih, const float* q, const float* weights, int n,
                    long long pos0, const CompressorState& keys, std::vector<int>* chosen);

}  // namespace dsv4
