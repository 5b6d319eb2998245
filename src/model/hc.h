// Manifold-constrained hyper-connections (mHC): the residual stream is hc_mult copies of the
// hidden state. Before a sub-layer, hc_pre mixes the copies into one input vector and derives
// the post weights and the doubly-stochastic comb matrix (Sinkhorn); after it, hc_post writes
// the output back into every copy. hc_head collapses the copies before the final norm.
#pragma once

#include <span>
#include <vector>

#include "model/weights.h"

namespace dsv4 {

struct HcMix {
  std::vector<float> post;  // [n, hc]
  std::vector<float> comb;  // [n, hc, hc]: comb[i][j] weights copy i into new copy j
};

// x: [n, hc, dim] -> y: [n, dim]; fills mix for hc_post.
void hc_pre(const HcParams& p, std::span<const float> x, int n, int hc, int dim, float norm_eps,
            int sinkhorn_iters, float hc_eps, std::span<float> y, HcMix& mix);

// out: [n, dim], residual: [n, hc, dim] -> new residual [n, hc, dim] (may alias residual).
void hc_post(const HcMix& mix, std::span<const float> out, std::span<const float> residual, int n,
             int hc, int dim, std::span<float> new_residual);

// x: [n, hc, dim] -> y: [n, dim] with pre = sigmoid(mixes * scale + base) + eps, no Sinkhorn.
void hc_head(const HcParams& p, std::span<const float> x, int n, int hc, int dim, float norm_eps,
             float hc_eps, std::span<float> y);

// The split + Sinkhorn of one token's mixes [(2 + hc) * hc] (exposed for tests).
void hc_split_sinkhorn(std::span<const float> mixes, const HcParams& p, int hc, int iters,
                       float eps, float* pre, float* post, float* comb);

}  // namespace dsv4
