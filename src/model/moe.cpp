// MoE is expert-batched: the rows routed to an expert go through it together. With many rows
// (prefill) the experts run one after another, each over all threads; with few (decode steps
// of one or several sessions), or experts so small that splitting their products costs more
// than it saves (the trained models' batches), the experts are spread over the threads whole. Each row's
// contributions are summed in ascending expert order, and a row's expert output does not
// depend on the other rows (quant/linear.h), so its result does not depend on which other
// rows share the call.
#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/sigmoid.h"
#include "core/thread_pool.h"
#include "dist/comm.h"
#include "ops/swiglu.h"
#include "ops/topk.h"

namespace dsv4 {

namespace {

// Up to this many rows, experts go whole to threads (see the top of the file); and up to this
// many multiply-adds in an average expert's three products (the default model's 1024-token
// training batch: 6M; V4-Flash's 512-token prefill chunk: 300M).
constexpr int kWholeExpertRows = 16;
constexpr double kWholeExpertMacs = 32e6;

float score_fn(ScoreFunc f, float z) {
  switch (f) {
    case ScoreFunc::sigmoid: return sigmoid(z);
    case ScoreFunc::sqrtsoftplus: return sqrt_softplus(z);
    case ScoreFunc::softmax: return z;  // normalised over experts by the caller
  }
  return z;
}

// SwiGLU expert on rows x [m, dim], scaled by weight[m] before w2 (empty = unweighted);
// saved (training) keeps its inside.
void expert_forward(const ExpertWeights& e, float limit, std::span<const float> x, int m,
                    std::span<const float> weight, bool act_quant, std::span<float> y, ExpertSaved* saved) {
  const int inter = e.w1.out;
  std::vector<float> gate(static_cast<size_t>(m) * inter), up(gate.size());
  linear(e.w1, x, m, gate, act_quant);
  linear(e.w3, x, m, up, act_quant);
  if (saved) saved->xe.assign(x.begin(), x.end()), saved->gate = gate, saved->up = up, saved->act.resize(gate.size());
  for (int t = 0; t < m; ++t)
    for (int i = 0; i < inter; ++i) {
      const size_t k = static_cast<size_t>(t) * inter + i;
      float v = swiglu(gate[k], up[k], limit);
      if (saved) saved->act[k] = v;
      if (!weight.empty()) v = weight[t] * v;
      gate[k] = v;
    }
  if (saved) saved->h = gate;
  linear(e.w2, gate, m, y, act_quant);
}

}  // namespace

void moe_route(const MoeWeights& w, bool hash, const ModelConfig& c, std::span<const float> logits,
               int token, std::vector<int>& experts, std::vector<float>& weights) {
  const int E = c.n_routed_experts, k = c.num_experts_per_tok;
  std::vector<float> s(E);
  for (int e = 0; e < E; ++e) s[e] = score_fn(c.scoring_func, logits[e]);
  if (c.scoring_func == ScoreFunc::softmax) {
    const float mx = *std::max_element(s.begin(), s.end());
    float sum = 0;
    for (float& v : s) sum += (v = std::exp(v - mx));
    for (float& v : s) v /= sum;
  }
  if (hash) {
    experts.assign(w.tid2eid.begin() + static_cast<size_t>(token) * k,
                   w.tid2eid.begin() + static_cast<size_t>(token + 1) * k);
  } else {
    std::vector<float> biased(s);
    for (int e = 0; e < E; ++e) biased[e] += w.bias[e];
    experts = topk_indices(biased, k);
  }
  weights.resize(experts.size());
  float sum = 0;
  for (size_t i = 0; i < experts.size(); ++i) sum += (weights[i] = s[experts[i]]);
  for (float& v : weights) {
    if (c.scoring_func != ScoreFunc::softmax) v /= sum;
    v *= c.routed_scaling_factor;
  }
}

int moe_forward(const MoeWeights& w, bool hash, const ModelConfig& c, std::span<const float> x,
                 std::span<const int> tokens, int n, bool act_quant, std::span<float> out, MoeSaved* saved) {
  const int dim = c.hidden_size, E = c.n_routed_experts;
  std::vector<float> logits(static_cast<size_t>(n) * E);
  linear(w.gate, x, n, logits, false);

  // Per expert: the tokens routed to it and their weights, tokens in ascending order.
  std::vector<std::vector<int>> rows(E);
  std::vector<std::vector<float>> row_w(E);
  std::vector<int> experts;
  std::vector<float> weights;
  if (saved) saved->chosen.assign(n, {});
  for (int t = 0; t < n; ++t) {
    moe_route(w, hash, c, std::span<const float>(logits).subspan(static_cast<size_t>(t) * E, E),
              tokens[t], experts, weights);
    for (size_t i = 0; i < experts.size(); ++i) {
      rows[experts[i]].push_back(t);
      row_w[experts[i]].push_back(weights[i]);
    }
    if (saved) saved->chosen[t] = experts;
  }
  if (saved) saved->experts.assign(E, {}), saved->shared.assign(w.shared ? 1 : 0, {});

  // This rank's experts (all of them in one process) that some row chose, ascending; a
  // model-parallel run sums the ranks' partial outputs before the shared expert, which every
  // rank holds whole.
  std::vector<int> active;
  for (int e = w.expert_begin; e < w.expert_begin + static_cast<int>(w.experts.size()); ++e)
    if (!rows[e].empty()) active.push_back(e);
  // Expert e on its rows -> ye [m, dim].
  auto run_expert = [&](int e, std::vector<float>& xe, std::vector<float>& ye) {
    const int m = static_cast<int>(rows[e].size());
    xe.resize(static_cast<size_t>(m) * dim);
    ye.resize(xe.size());
    for (int i = 0; i < m; ++i)
      std::copy_n(x.data() + static_cast<size_t>(rows[e][i]) * dim, dim, xe.data() + static_cast<size_t>(i) * dim);
    expert_forward(w.experts[e - w.expert_begin], c.swiglu_limit, xe, m, row_w[e], act_quant, ye,
                   saved ? &saved->experts[e] : nullptr);
  };
  auto add_rows = [&](int e, const std::vector<float>& ye) {
    for (size_t i = 0; i < rows[e].size(); ++i) {
      float* dst = out.data() + static_cast<size_t>(rows[e][i]) * dim;
      for (int d = 0; d < dim; ++d) dst[d] += ye[i * dim + d];
    }
  };
  std::fill(out.begin(), out.end(), 0.0f);
  std::vector<float> xe, ye;
  const double inter = w.experts.empty() ? 0 : w.experts[0].w1.out;
  const double expert_macs = 3.0 * dim * inter * n * c.num_experts_per_tok / E;
  if (n <= kWholeExpertRows || expert_macs <= kWholeExpertMacs) {
    // Decode steps (one session or a batch of them), small experts: each thread runs whole
    // experts (the linears inside run inline on it), without a barrier per matrix.
    std::vector<std::vector<float>> ys(active.size());
    pool().parallel_for(active.size(), [&](size_t i0, size_t i1) {
      std::vector<float> xi;
      for (size_t i = i0; i < i1; ++i) run_expert(active[i], xi, ys[i]);
    });
    for (size_t i = 0; i < active.size(); ++i) add_rows(active[i], ys[i]);
  } else {
    // Prefill: one expert at a time over all threads, its rows one GEMM.
    for (int e : active) {
      run_expert(e, xe, ye);
      add_rows(e, ye);
    }
  }
  Comm::get().all_reduce_sum(out);
  if (w.shared) {
    ye.resize(static_cast<size_t>(n) * dim);
    expert_forward(*w.shared, c.swiglu_limit, x, n, {}, act_quant, ye, saved ? &saved->shared[0] : nullptr);
    pool().parallel_for(ye.size(), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) out[i] += ye[i];
    });
  }
  if (saved) saved->logits = std::move(logits), saved->rows = std::move(rows), saved->weight = std::move(row_w);
  return static_cast<int>(active.size());
}

}  // namespace dsv4
