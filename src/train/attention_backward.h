// Backward of a sliding-window attention layer over a sequence from position 0 (training), as
// model/attention.cpp computes it in smooth mode with float weights: q = per-head RMSNorm(wq_b
// q_norm(wq_a x)) with RoPE, kv = RoPE(kv_norm(wkv x)) (one kv row per token, key and value of
// every head), each token attending to the last `window` positions and the sink, the output
// rotated back, grouped low-rank wo_a, then wo_b. (Compressed entries come from the compressor
// and the indexer, whose backwards are separate.)
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

class Rope;

struct AttentionF32 {
  int dim = 0, heads = 0, head_dim = 0, q_lora = 0, groups = 0, o_lora = 0, window = 0;
  float eps = 1e-6f;
  std::vector<float> attn_sink;          // [heads]
  std::vector<float> wq_a, q_norm, wq_b;  // [q_lora, dim], [q_lora], [heads * head_dim, q_lora]
  std::vector<float> wkv, kv_norm;        // [head_dim, dim], [head_dim]
  std::vector<float> wo_a, wo_b;          // [groups * o_lora, heads * head_dim / groups], [dim, groups * o_lora]
};

// x [n, dim] at positions 0 .. n - 1, dout [n, dim] -> dx [n, dim] (overwritten); g accumulates
// every weight's gradient (same shapes as a).
void attention_swa_backward(const AttentionF32& a, const Rope& rope, std::span<const float> x, int n,
                            std::span<const float> dout, AttentionF32& g, std::span<float> dx);

}  // namespace dsv4
