// A whole attention layer over the sequences of a batch, each from position 0 (training; its
// rows stacked as train/segments.h describes, each token attending only inside its sequence). The forward is
// model/attention.h's own ops (attention_project, the compressor, indexer_choose, attend_heads,
// attention_output) on a view of the float masters (train/master_views.h), without the
// activation rounding, as --no-act-quant runs: q = per-head RMSNorm(wq_b q_norm(wq_a x)) with
// RoPE, kv = RoPE(kv_norm(wkv x)) (one kv row per token, key and value of every head); each
// token attends to the last `window` positions, then to compressed entries (HCA: every complete
// block; CSA: the lightning indexer's top-k of them), and the sink; the output is rotated back,
// goes through the grouped low-rank wo_a, then wo_b.
//
// The indexer is trained the way DeepSeek trains it: a KL loss toward the main attention's
// distribution over the entries it chose (summed over heads, normalized), on inputs detached
// from the model (its gradient reaches only its own weights), and its top-k is not
// differentiated.
#pragma once

#include <span>
#include <vector>

#include "train/compressor_backward.h"

namespace dsv4 {

class Rope;

struct IndexerF32 {
  int heads = 0, head_dim = 0, topk = 0;
  std::vector<float> wq_b;          // [heads * head_dim, q_lora], input: the q_norm output
  std::vector<float> weights_proj;  // [heads, dim]
  CompressorF32 compressor;         // its keys
};

struct AttentionF32 {
  int dim = 0, heads = 0, head_dim = 0, q_lora = 0, groups = 0, o_lora = 0, window = 0;
  int ratio = 0;  // 0: window only; 4: CSA (compressor + indexer); > 4: HCA (compressor)
  float eps = 1e-6f;
  std::vector<float> attn_sink;          // [heads]
  std::vector<float> wq_a, q_norm, wq_b;  // [q_lora, dim], [q_lora], [heads * head_dim, q_lora]
  std::vector<float> wkv, kv_norm;        // [head_dim, dim], [head_dim]
  std::vector<float> wo_a, wo_b;          // [groups * o_lora, heads * head_dim / groups], [dim, groups * o_lora]
  CompressorF32 compressor;               // ratio > 0
  IndexerF32 indexer;                     // ratio == 4
};

// What the forward computes on the way, which the backward walks back through: q before and
// after its norms, kv, the compressed entries, the indexer's queries, weights, keys and choice,
// o, the low-rank output.
struct AttentionTape {
  // n rows; e compressed entries (seg.entries(ratio), every sequence's, in order).
  std::vector<float> qa, qn, qb, q;      // [n, q_lora] x 2, [n, H * D] x 2
  std::vector<float> kva, kv;            // [n, D]
  std::vector<float> entries;            // [e, D]
  std::vector<std::vector<int>> chosen;  // per token, the entries (of all e) it attends to
  std::vector<float> iq, iw, ikeys;      // indexer: [n, ih * id] (roped), [n, ih] (scaled), [e, id]
  std::vector<float> o, low, out;        // [n, H * D], [n, G * R], [n, dim]
  CompressorTape compressor, index_compressor;
};

// out [n, dim] for x [n, dim] (n = seg.rows()); with tape, keeps what the backward needs.
void attention_forward_f32(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg,
                           std::span<float> out, AttentionTape* tape = nullptr);

// The compressed entries each token attends to (CSA: the indexer's choice, ascending; HCA: all
// complete blocks), as the forward chooses them.
std::vector<std::vector<int>> attention_entries_f32(const AttentionF32& a, const Rope& rope, std::span<const float> x,
                                                    const Segments& seg);

// dout [n, dim] -> dx [n, dim] (overwritten); g accumulates every weight's gradient (same
// shapes as a), the indexer's from its KL loss, whose sum over the tokens is returned. From the
// forward's tape of the same x, or (none given) computing the forward again: the same bits.
double attention_backward(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg,
                          std::span<const float> dout, AttentionF32& g, std::span<float> dx,
                          const AttentionTape* tape = nullptr);

// The indexer's loss alone (what attention_backward returns), for gradient checks.
double indexer_loss_f32(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg);

}  // namespace dsv4
