#include "train/train_cost.h"

#include "model/tensor_spec.h"

namespace dsv4 {

double training_flops_per_token(const ModelConfig& c, bool mtp) {
  const double expert_share = static_cast<double>(c.num_experts_per_tok) / c.n_routed_experts;
  double blocks = 0, head = 0, mtp_layer = 0;  // one forward's FLOPs per token
  for (const TensorSpec& s : expected_tensors(c)) {
    if (!multiplies_activations(s)) continue;
    double flops = 2.0 * static_cast<double>(s.logical_params()) * (s.routed_expert ? expert_share : 1.0);
    if (s.name == "head.weight") head += flops;
    else if (!s.mtp) blocks += flops;
    else if (s.layer == c.num_hidden_layers) {  // train_batch trains the first MTP layer only
      if (s.name.ends_with(".h_proj.weight")) flops *= c.hc_mult;
      mtp_layer += flops;
    }
  }
  return 3 * (blocks + head + (mtp ? mtp_layer + head : 0.0));
}

}  // namespace dsv4
