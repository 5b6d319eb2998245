// Backward of one token through a MoE layer with float weights (training keeps float master
// weights): the gate's logits, the sqrtsoftplus routing weights of the chosen experts (the
// choice itself, by the biased scores, is not differentiated), every chosen expert's SwiGLU with
// the clamp (its routing weight applied before w2, as model/moe.cpp does) and the shared expert.
#pragma once

#include <span>
#include <vector>

#include "io/config.h"

namespace dsv4 {

struct ExpertF32 {
  std::vector<float> w1, w2, w3;  // [inter, dim], [dim, inter], [inter, dim]
};

struct MoeF32 {
  std::vector<float> gate;  // [n_routed_experts, dim]
  std::vector<ExpertF32> experts;
  std::vector<ExpertF32> shared;  // zero or one
};

// x [dim], chosen experts (ascending, as routing returns them), dy [dim] -> dx [dim]
// (overwritten); g accumulates the gradients of every weight (same shapes as m).
void moe_token_backward(const MoeF32& m, const ModelConfig& c, std::span<const float> x,
                        std::span<const int> chosen, std::span<const float> dy, MoeF32& g, std::span<float> dx);

}  // namespace dsv4
