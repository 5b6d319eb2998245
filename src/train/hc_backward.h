// Backward of mHC's split + Sinkhorn (model/hc.h: hc_split_sinkhorn), differentiated through
// every unrolled iteration as the reference computes them, and of hc_post's mixing.
#pragma once

#include <span>
#include <vector>

#include "model/weights.h"

namespace dsv4 {

struct HcSplitGrads {
  std::vector<float> mixes;  // [(2 + hc) * hc]
  float scale[3] = {0, 0, 0};
  std::vector<float> base;   // [(2 + hc) * hc]
};

// Given the forward's inputs and the gradients of the loss with respect to pre [hc], post [hc]
// and comb [hc, hc], the gradients with respect to mixes, scale and base.
HcSplitGrads hc_split_sinkhorn_backward(std::span<const float> mixes, const HcParams& p, int hc, int iters, float eps,
                                        std::span<const float> dpre, std::span<const float> dpost,
                                        std::span<const float> dcomb);

// hc_post for one token: new[j] = post[j] * out + sum_i comb[i, j] * res[i] (rows of dim).
// Gradients with respect to post [hc], comb [hc, hc], out [dim] and res [hc, dim] (overwritten).
void hc_post_backward(std::span<const float> post, std::span<const float> comb, std::span<const float> out,
                      std::span<const float> res, int hc, int dim, std::span<const float> dnew, std::span<float> dpost,
                      std::span<float> dcomb, std::span<float> dout, std::span<float> dres);

}  // namespace dsv4
