// Recomputes each chosen expert's forward in float, then walks it back; the routing weights
// and the gate last, since every expert's dL/dweight feeds them.
#include "train/moe_backward.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "model/moe.h"
#include "train/backward.h"

namespace dsv4 {

namespace {

// One expert: h = weight * swiglu(w1 x, w3 x), y = w2 h. Returns dL/dweight; accumulates the
// expert's weight gradients and dx.
double expert_backward(const ExpertF32& e, int dim, int inter, float limit, double weight, std::span<const float> x,
                       std::span<const float> dy, ExpertF32& ge, std::span<float> dx) {
  std::vector<float> gate(inter), up(inter), act(inter), h(inter);
  linear_forward(x, e.w1, 1, dim, inter, gate);
  linear_forward(x, e.w3, 1, dim, inter, up);
  swiglu_forward(gate, up, limit, act);
  for (int i = 0; i < inter; ++i) h[i] = static_cast<float>(weight * act[i]);
  std::vector<float> dh(inter), dgate(inter), dup(inter), dxe(dim);
  linear_backward(h, e.w2, dy, 1, inter, dim, dh, ge.w2);
  double dweight = 0;
  for (int i = 0; i < inter; ++i) {
    dweight += double(dh[i]) * act[i];
    dh[i] = static_cast<float>(dh[i] * weight);
  }
  swiglu_backward(gate, up, limit, dh, dgate, dup);
  linear_backward(x, e.w1, dgate, 1, dim, inter, dxe, ge.w1);
  for (int d = 0; d < dim; ++d) dx[d] += dxe[d];
  linear_backward(x, e.w3, dup, 1, dim, inter, dxe, ge.w3);
  for (int d = 0; d < dim; ++d) dx[d] += dxe[d];
  return dweight;
}

}  // namespace

void moe_token_backward(const MoeF32& m, const ModelConfig& c, std::span<const float> x,
                        std::span<const int> chosen, std::span<const float> dy, MoeF32& g, std::span<float> dx) {
  const int dim = c.hidden_size, inter = c.moe_intermediate_size, E = c.n_routed_experts;
  DSV4_CHECK(c.scoring_func == ScoreFunc::sqrtsoftplus, "moe_token_backward: only the sqrtsoftplus gate is supported");
  DSV4_CHECK(x.size() == size_t(dim) && dy.size() == size_t(dim) && dx.size() == size_t(dim), "moe_token_backward: sizes");
  std::vector<float> logits(E);
  linear_forward(x, m.gate, 1, dim, E, logits);
  // The routing weights of the chosen experts, as model/moe.cpp computes them.
  std::vector<double> s(chosen.size());
  double total = 0;
  for (size_t k = 0; k < chosen.size(); ++k) total += (s[k] = sqrt_softplus<double>(logits[chosen[k]]));
  std::fill(dx.begin(), dx.end(), 0.0f);
  std::vector<float> dweights(chosen.size());
  for (size_t k = 0; k < chosen.size(); ++k)
    dweights[k] = static_cast<float>(expert_backward(m.experts[chosen[k]], dim, inter, c.swiglu_limit,
                                                     s[k] / total * c.routed_scaling_factor, x, dy,
                                                     g.experts[chosen[k]], dx));
  for (size_t i = 0; i < m.shared.size(); ++i)
    expert_backward(m.shared[i], dim, inter, c.swiglu_limit, 1.0, x, dy, g.shared[i], dx);
  std::vector<float> dlogits(E, 0.0f), dxg(dim);
  routing_weights_backward(logits, chosen, c.routed_scaling_factor, dweights, dlogits);
  linear_backward(x, m.gate, dlogits, 1, dim, E, dxg, g.gate);
  for (int d = 0; d < dim; ++d) dx[d] += dxg[d];
}

}  // namespace dsv4
