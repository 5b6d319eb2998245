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

// hc_pre for one token, whole: mixes = (fn . x) / sqrt(mean(x^2) + norm_eps), the split and
// Sinkhorn, y = sum_i pre[i] x[i]. Given dL/dy [dim], dL/dpost [hc] and dL/dcomb [hc, hc] (the
// hc_post inputs), fills dx [hc * dim] (overwritten) and accumulates dfn [mix, hc * dim],
// dbase [mix], dscale [3].
void hc_pre_backward(std::span<const float> fn, const HcParams& p, std::span<const float> x, int hc, int dim,
                     float norm_eps, int iters, float hc_eps, std::span<const float> dy, std::span<const float> dpost,
                     std::span<const float> dcomb, std::span<float> dx, std::span<float> dfn, std::span<float> dbase,
                     std::span<float> dscale);

// hc_pre_backward for n tokens at once, x [n, hc * dim], dy [n, dim], dpost [n, hc], dcomb [n,
// hc, hc] -> dx [n, hc * dim] (overwritten): the mixes' products with fn as matrix products,
// the split and Sinkhorn per token (in parallel, parameter gradients summed in a fixed order).
void hc_pre_backward_batch(std::span<const float> fn, const HcParams& p, std::span<const float> x, int n, int hc,
                           int dim, float norm_eps, int iters, float hc_eps, std::span<const float> dy,
                           std::span<const float> dpost, std::span<const float> dcomb, std::span<float> dx,
                           std::span<float> dfn, std::span<float> dbase, std::span<float> dscale);

// hc_head for one token: mixes = (fn . x) / sqrt(mean(x^2) + norm_eps), pre = sigmoid(mixes *
// scale + base) + hc_eps, y = sum_i pre[i] x[i]. Given dL/dy [dim]: dx [hc * dim] overwritten,
// dfn [hc, hc * dim], dbase [hc], dscale [1] accumulated.
void hc_head_backward(std::span<const float> fn, const HcParams& p, std::span<const float> x, int hc, int dim,
                      float norm_eps, float hc_eps, std::span<const float> dy, std::span<float> dx, std::span<float> dfn,
                      std::span<float> dbase, std::span<float> dscale);

// hc_post for one token: new[j] = post[j] * out + sum_i comb[i, j] * res[i] (rows of dim).
// Gradients with respect to post [hc], comb [hc, hc], out [dim] and res [hc, dim] (overwritten).
// With AVX2 and hc = 4 the sums run 4 doubles wide: the same bits as the plain loops
// (scalar::, tests/test_train.cpp).
void hc_post_backward(std::span<const float> post, std::span<const float> comb, std::span<const float> out,
                      std::span<const float> res, int hc, int dim, std::span<const float> dnew, std::span<float> dpost,
                      std::span<float> dcomb, std::span<float> dout, std::span<float> dres);
namespace scalar {
void hc_post_backward(std::span<const float> post, std::span<const float> comb, std::span<const float> out,
                      std::span<const float> res, int hc, int dim, std::span<const float> dnew, std::span<float> dpost,
                      std::span<float> dcomb, std::span<float> dout, std::span<float> dres);
}  // namespace scalar

}  // namespace dsv4
