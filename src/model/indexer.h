// The lightning indexer of CSA layers: scores every complete compressed block for each query
// token, score(b) = sum_h w[h] * relu(q[h] . k[b]), and picks the top index_topk blocks. Its
// queries and keys are Hadamard-rotated and FP4-rounded; its keys come from its own compressor.
#pragma once

#include <span>
#include <vector>

#include "io/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

// x: [n, dim] attention input; qr: [n, q_lora_rank] (q_norm output). Updates the indexer's
// compressed keys, then returns per token the chosen block indices (ascending).
std::vector<std::vector<int>> indexer_forward(const IndexerWeights& w, const ModelConfig& c,
                                              std::span<const float> x, std::span<const float> qr,
                                              int n, long long pos0, const Rope& rope,
                                              bool act_quant, CompressorState& keys);

}  // namespace dsv4
