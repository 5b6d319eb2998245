// Walks each chosen expert's forward (kept, or recomputed) back in float; the routing weights
// and the gate last, since every expert's dL/dweight feeds them. The sequence version groups
// the tokens per expert, the experts spread over the threads whole; the one-token version is the plain definition it is tested against.
#include "train/moe_backward.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/thread_pool.h"
#include "model/moe.h"
#include "ops/swiglu.h"
#include "train/master_views.h"
#include "train/matmul.h"
#include "train/routing.h"
#include "train/swiglu.h"

namespace dsv4 {

namespace {

// One expert: h = weight * swiglu(w1 x, w3 x), y = w2 h. Returns dL/dweight; accumulates the
// expert's weight gradients and dx.
double expert_backward(const ExpertF32& e, int dim, int inter, float limit, double weight, std::span<const float> x,
                       std::span<const float> dy, ExpertF32& ge, std::span<float> dx) {
  std::vector<float> gate(inter), up(inter), act(inter), h(inter);
  linear_forward(x, e.w1, 1, dim, inter, gate);
  linear_forward(x, e.w3, 1, dim, inter, up);
  swiglu(gate, up, limit, act);
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

// Its backward from the tape: accumulates ge, leaves the rows' dx in dxr [m, dim] and returns
// dL/dweight per row.
std::vector<double> expert_backward_rows(const ExpertF32& e, int dim, int inter, float limit, std::span<const int> rows,
                                         std::span<const float> weight, const ExpertSaved& tp,
                                         std::span<const float> dout, ExpertF32& ge, std::vector<float>& dxr) {
  const int m = static_cast<int>(rows.size());
  dxr.assign(size_t(m) * dim, 0.0f);
  if (m == 0) return {};
  std::vector<float> dy(size_t(m) * dim), dh(tp.h.size()), dgate(tp.h.size()), dup(tp.h.size()), dxe(tp.xe.size());
  for (int i = 0; i < m; ++i) std::copy_n(dout.begin() + size_t(rows[i]) * dim, dim, dy.begin() + size_t(i) * dim);
  linear_backward(tp.h, e.w2, dy, m, inter, dim, dh, ge.w2);
  std::vector<double> dweight(m, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < inter; ++j) {
      float& v = dh[size_t(i) * inter + j];
      dweight[i] += double(v) * tp.act[size_t(i) * inter + j];
      v *= weight[i];
    }
  swiglu_backward(tp.gate, tp.up, limit, dh, dgate, dup);
  for (auto [w, gw, d] : {std::tuple{&e.w1, &ge.w1, &dgate}, {&e.w3, &ge.w3, &dup}}) {
    linear_backward(tp.xe, *w, *d, m, dim, inter, dxe, *gw);
    add_to(dxr, dxe);
  }
  return dweight;
}

// dxr's rows added into dx at rows.
void add_rows(std::span<const int> rows, const std::vector<float>& dxr, int dim, std::span<float> dx) {
  for (size_t i = 0; i < rows.size(); ++i)
    for (int k = 0; k < dim; ++k) dx[size_t(rows[i]) * dim + k] += dxr[i * dim + k];
}

}  // namespace

void moe_forward_f32(const MoeF32& m, const MoeRouting& r, const ModelConfig& c, std::span<const float> x,
                     std::span<const int> tokens, int n, std::span<float> out, std::vector<long long>* load,
                     MoeTape* tape) {
  DSV4_CHECK(x.size() == size_t(n) * c.hidden_size && tokens.size() == size_t(n) && out.size() == x.size(),
             "moe: sizes do not match");
  DSV4_CHECK(m.shared.size() <= 1, "moe: ", m.shared.size(), " shared experts");
  MasterViews views;
  MoeTape own;
  MoeTape& tp = tape ? *tape : own;
  moe_forward(views.moe(m, r, c), !r.tid2eid.empty(), c, x, tokens, n, /*act_quant=*/false, out, &tp);
  if (load) {
    load->assign(c.n_routed_experts, 0);
    for (int e = 0; e < c.n_routed_experts; ++e) (*load)[e] = static_cast<long long>(tp.rows[e].size());
  }
}

void moe_backward_f32(const MoeF32& m, const MoeRouting& r, const ModelConfig& c, std::span<const float> x,
                      std::span<const int> tokens, int n, std::span<const float> dout, MoeF32& g, std::span<float> dx,
                      const MoeTape* tape) {
  const int dim = c.hidden_size, inter = c.moe_intermediate_size, E = c.n_routed_experts;
  // The forward routes with any of the checkpoints' gates (moe_route); the routing weights'
  // backward is V4's sqrtsoftplus one.
  DSV4_CHECK(c.scoring_func == ScoreFunc::sqrtsoftplus, "training supports only the sqrtsoftplus gate");
  MoeTape recomputed;
  if (!tape) {
    std::vector<float> unused(size_t(n) * dim);
    moe_forward_f32(m, r, c, x, tokens, n, unused, nullptr, &recomputed);
  }
  const MoeTape& tp = tape ? *tape : recomputed;
  DSV4_CHECK(tp.chosen.size() == size_t(n) && tp.experts.size() == size_t(E), "moe_backward_f32: the tape is of ",
             tp.chosen.size(), " tokens, not ", n);
  std::fill(dx.begin(), dx.end(), 0.0f);
  // The routed experts whole on the threads (each its own gradients; the products inside run
  // inline), their rows' dx added in expert order; then the shared expert over all threads.
  std::vector<std::vector<double>> dw(E);
  std::vector<std::vector<float>> dxr(E);
  pool().parallel_for(size_t(E), [&](size_t e0, size_t e1) {
    for (size_t e = e0; e < e1; ++e)
      dw[e] = expert_backward_rows(m.experts[e], dim, inter, c.swiglu_limit, tp.rows[e], tp.weight[e], tp.experts[e],
                                   dout, g.experts[e], dxr[e]);
  });
  std::vector<std::vector<float>> dweights(n);  // per token, in its chosen order
  for (int t = 0; t < n; ++t) dweights[t].assign(tp.chosen[t].size(), 0.0f);
  for (int e = 0; e < E; ++e) {
    add_rows(tp.rows[e], dxr[e], dim, dx);
    for (size_t i = 0; i < dw[e].size(); ++i) {
      const int t = tp.rows[e][i];
      const auto& ch = tp.chosen[t];
      dweights[t][std::find(ch.begin(), ch.end(), e) - ch.begin()] = static_cast<float>(dw[e][i]);
    }
  }
  std::vector<int> all(n);
  for (int t = 0; t < n; ++t) all[t] = t;
  const std::vector<float> ones(n, 1.0f);
  std::vector<float> dx_shared;
  for (size_t i = 0; i < m.shared.size(); ++i) {
    expert_backward_rows(m.shared[i], dim, inter, c.swiglu_limit, all, ones, tp.shared[i], dout, g.shared[i], dx_shared);
    add_rows(all, dx_shared, dim, dx);
  }
  std::vector<float> dlogits(tp.logits.size(), 0.0f);
  for (int t = 0; t < n; ++t)
    routing_weights_backward(std::span<const float>(tp.logits).subspan(size_t(t) * E, E), tp.chosen[t],
                             c.routed_scaling_factor, dweights[t], std::span<float>(dlogits).subspan(size_t(t) * E, E));
  linear_backward(x, m.gate, dlogits, n, dim, E, dx, g.gate, /*add_dx=*/true);
}

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
