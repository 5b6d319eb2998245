#include "ckpt/cost.h"

#include "model/tensor_spec.h"

namespace dsv4 {

TokenCost token_cost(const ModelConfig& c) {
  TokenCost t;
  const double expert_share = static_cast<double>(c.num_experts_per_tok) / c.n_routed_experts;
  for (const TensorSpec& s : expected_tensors(c)) {
    if (s.mtp) continue;
    // Stored bytes: fp8 / fp4-packed / ue8m0 1 per element; floats as the release stores them
    // (BF16 matrices, the hc_*, ape, attn_sink and gate bias tensors F32).
    const double per_element = s.kind == SpecKind::index ? 0.0
                               : s.kind != SpecKind::floats ? 1.0
                               : released_as_f32(s.name) ? 4.0 : 2.0;
    const double bytes = per_element * static_cast<double>(s.numel());
    const double share = s.routed_expert ? expert_share : 1.0;
    if (s.name == "embed.weight") {
      t.embed_row_bytes = 2.0 * c.hidden_size;
      t.weight_bytes += t.embed_row_bytes;
      t.fixed_bytes += t.embed_row_bytes;
      continue;
    }
    t.weight_bytes += bytes * share;
    if (s.routed_expert) t.expert_bytes += bytes / (static_cast<double>(c.n_routed_experts) * c.num_hidden_layers);
    else t.fixed_bytes += bytes;
    if (multiplies_activations(s)) t.matmul_flops += 2.0 * static_cast<double>(s.logical_params()) * share;
  }
  return t;
}

}  // namespace dsv4
