// Backward of one token through a MoE layer with float weights (training keeps float master
// weights): the gate's logits, the sqrtsoftplus routing weights of the chosen experts (the
// choice itself, by the biased scores, is not differentiated), every chosen expert's SwiGLU with
// the clamp (its routing weight applied before w2, as model/moe.cpp does) and the shared expert.
#pragma once

#include <span>
#include <vector>

#include "io/config.h"
#include "model/moe.h"

namespace dsv4 {

struct ExpertF32 {
  std::vector<float> w1, w2, w3;  // [inter, dim], [dim, inter], [inter, dim]
};

struct MoeF32 {
  std::vector<float> gate;  // [n_routed_experts, dim]
  std::vector<ExpertF32> experts;
  std::vector<ExpertF32> shared;  // zero or one
};

// Routing of a layer: score layers choose by the biased gate scores, hash layers (tid2eid
// not empty, [vocab, k]) by the token id; model/moe.cpp's moe_route either way.
struct MoeRouting {
  std::vector<float> bias;     // [n_routed_experts]
  std::vector<int> tid2eid;    // hash layers only
};

// What the forward keeps for the backward: model/moe.h's own record of a forward.
using MoeTape = MoeSaved;

// A whole sequence: model/moe.h's moe_forward on a view of the masters (train/master_views.h),
// x [n, dim] -> out [n, dim]. load (if not null, [n_routed_experts]) counts the tokens each
// expert took; with tape, keeps what the backward needs.
void moe_forward_f32(const MoeF32& m, const MoeRouting& r, const ModelConfig& c, std::span<const float> x,
                     std::span<const int> tokens, int n, std::span<float> out, std::vector<long long>* load = nullptr,
                     MoeTape* tape = nullptr);
// dout [n, dim] -> dx [n, dim] (overwritten); g accumulates every weight's gradient. From the
// forward's tape of the same x, or (none given) computing the forward again: the same bits.
void moe_backward_f32(const MoeF32& m, const MoeRouting& r, const ModelConfig& c, std::span<const float> x,
                      std::span<const int> tokens, int n, std::span<const float> dout, MoeF32& g, std::span<float> dx,
                      const MoeTape* tape = nullptr);

// x [dim], chosen experts (ascending, as routing returns them), dy [dim] -> dx [dim]
// (overwritten); g accumulates the gradients of every weight (same shapes as m).
void moe_token_backward(const MoeF32& m, const ModelConfig& c, std::span<const float> x,
                        std::span<const int> chosen, std::span<const float> dy, MoeF32& g, std::span<float> dx);

}  // namespace dsv4
