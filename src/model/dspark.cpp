// The DSpark drafter (see dspark.h): its stages reuse the block pieces of the target (hc,
// norms, the attention projections and output, the MoE), and differ only in what their
// attention sees.
#include "model/dspark.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/thread_pool.h"
#include "model/attention.h"
#include "model/hc.h"
#include "model/moe.h"
#include "ops/norm.h"
#include "quant/linear.h"

namespace dsv4 {

std::vector<float> dspark_capture(const ModelConfig& c, const ForwardTrace& trace, int row0, int n) {
  const std::vector<int>& targets = c.dspark.target_layer_ids;
  const int dim = c.hidden_size, hc = c.hc_mult, k = static_cast<int>(targets.size());
  std::vector<float> out(static_cast<size_t>(n) * k * dim);
  for (int l = 0; l < k; ++l) {
    DSV4_CHECK(static_cast<size_t>(targets[l]) < trace.layer_hidden.size(),
               "DSpark capture: the trace kept no stream of layer ", targets[l]);
    const std::vector<float>& all = trace.layer_hidden[targets[l]];
    DSV4_CHECK(all.size() >= static_cast<size_t>(row0 + n) * hc * dim, "DSpark capture: layer ", targets[l],
               "'s stream holds ", all.size() / (static_cast<size_t>(hc) * dim), " rows, not ", row0 + n);
    const float* s = all.data() + static_cast<size_t>(row0) * hc * dim;
    for (int t = 0; t < n; ++t)
      for (int d = 0; d < dim; ++d) {
        float sum = 0;
        for (int j = 0; j < hc; ++j) sum += s[(static_cast<size_t>(t) * hc + j) * dim + d];
        out[(static_cast<size_t>(t) * k + l) * dim + d] = sum / static_cast<float>(hc);
      }
  }
  return out;
}

Dspark::Dspark(const Model& m)
    : m_(m),
      c_(m.config()),
      w_(m.weights()),
      act_quant_(m.act_quant()),
      rope_(c_.qk_rope_head_dim, c_.rope_theta, 0, 1, 0, 0) {
  DSV4_CHECK(c_.dspark.stages > 0 && w_.dspark.stages.size() == static_cast<size_t>(c_.dspark.stages),
             "this model has no DSpark drafter (no dspark_* keys in config.json)");
}

DsparkState Dspark::new_state() const {
  DsparkState st;
  const KvFormat kv = act_quant_ ? KvFormat::fp8_nope : KvFormat::f32;
  for (int s = 0; s < c_.dspark.stages; ++s) {
    st.rings.emplace_back(kv, c_.head_dim, c_.qk_rope_head_dim);
    st.rings.back().resize(c_.sliding_window);
  }
  return st;
}

std::vector<float> Dspark::absorb(DsparkState& state, std::span<const float> main_hidden) const {
  const int dim = c_.hidden_size, width = w_.dspark.main_proj.in;
  DSV4_CHECK(!main_hidden.empty() && main_hidden.size() % width == 0, "DSpark: main_hidden holds ", main_hidden.size(),
             " values, not a multiple of ", width);
  const int n = static_cast<int>(main_hidden.size() / width);
  std::vector<float> main_x(static_cast<size_t>(n) * dim);
  linear(w_.dspark.main_proj, main_hidden, n, main_x, act_quant_);
  rmsnorm(main_x, w_.dspark.main_norm, c_.rms_norm_eps, dim, main_x);
  std::vector<long long> pos(n);
  for (int t = 0; t < n; ++t) pos[t] = state.pos + t;
  const int win = c_.sliding_window, D = c_.head_dim;
  std::vector<float> kv;
  for (int s = 0; s < c_.dspark.stages; ++s) {
    attention_kv(w_.dspark.stages[s].attn, c_, rope_, main_x, pos, act_quant_, kv);
    for (int t = std::max(0, n - win); t < n; ++t)
      state.rings[s].store(pos[t] % win, std::span<const float>(kv).subspan(static_cast<size_t>(t) * D, D));
  }
  state.pos += n;
  return main_x;
}

// One stage on the block's stream h [B, hc, dim] in place (a block whose attention sees the
// ring and the block's own rows).
void Dspark::stage_forward(int s, const DsparkState& state, long long first_pos, std::span<const int> ids,
                           std::vector<float>& h) const {
  const BlockWeights& b = w_.dspark.stages[s];
  const int B = static_cast<int>(ids.size()), hc = c_.hc_mult, dim = c_.hidden_size, D = c_.head_dim;
  const int H = b.attn.wq_b.out / D, win = c_.sliding_window;
  const float eps = c_.rms_norm_eps;
  std::vector<float> y(static_cast<size_t>(B) * dim), out(y.size());
  HcMix mix;
  hc_pre(b.hc_attn, h, B, hc, dim, eps, c_.hc_sinkhorn_iters, c_.hc_eps, y, mix);
  rmsnorm(y, b.attn_norm, eps, dim, y);

  std::vector<long long> pos(B);
  for (int k = 0; k < B; ++k) pos[k] = first_pos + k;
  std::vector<float> qr, q, kv;
  attention_project(b.attn, c_, rope_, y, pos, act_quant_, qr, q, kv);
  // Keys: the ring's first min(window, i + 1) slots (by slot, as the reference indexes them),
  // then the block's rows.
  const int slots = static_cast<int>(std::min<long long>(win, state.pos));
  std::vector<float> ring(static_cast<size_t>(slots) * D);
  for (int j = 0; j < slots; ++j) state.rings[s].load(j, ring.data() + static_cast<size_t>(j) * D);
  std::vector<const float*> keys;
  for (int j = 0; j < slots; ++j) keys.push_back(ring.data() + static_cast<size_t>(j) * D);
  for (int k = 0; k < B; ++k) keys.push_back(kv.data() + static_cast<size_t>(k) * D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> o(static_cast<size_t>(B) * H * D);
  pool().parallel_for(static_cast<size_t>(B) * H, [&](size_t i0, size_t i1) {
    std::vector<float> scores, sums;
    for (size_t i = i0; i < i1; ++i) {
      const size_t k = i / H;
      const int h0 = static_cast<int>(i % H);
      attend_heads(q.data() + k * H * D, h0, h0 + 1, keys, D, scale, b.attn.attn_sink, rope_, pos[k], scores, sums,
                   o.data() + k * H * D);
    }
  });
  attention_output(b.attn, c_, o, B, act_quant_, out);
  hc_post(mix, out, h, B, hc, dim, h);

  hc_pre(b.hc_ffn, h, B, hc, dim, eps, c_.hc_sinkhorn_iters, c_.hc_eps, y, mix);
  rmsnorm(y, b.ffn_norm, eps, dim, y);
  moe_forward(b.ffn, b.hash, c_, y, ids, B, act_quant_, out);
  hc_post(mix, out, h, B, hc, dim, h);
}

DsparkDraft Dspark::draft(const DsparkState& state, int anchor, const Chooser& choose) const {
  const DsparkConfig& d = c_.dspark;
  const int B = d.block_size, hc = c_.hc_mult, dim = c_.hidden_size, V = c_.vocab_size, R = d.markov_rank;
  DSV4_CHECK(anchor >= 0 && anchor < V, "DSpark: anchor token ", anchor, " is outside the vocabulary [0, ", V, ")");
  DSV4_CHECK(state.pos > 0, "DSpark: nothing absorbed yet (draft after a prefill)");
  std::vector<int> ids(B, d.noise_token_id);
  ids[0] = anchor;
  // The block's rows embedded and repeated into every hc copy: h [B, hc, dim].
  const std::vector<float> e = m_.embed(ids);
  std::vector<float> h(static_cast<size_t>(B) * hc * dim);
  for (int k = 0; k < B; ++k)
    for (int j = 0; j < hc; ++j)
      std::copy_n(e.data() + static_cast<size_t>(k) * dim, dim, h.data() + (static_cast<size_t>(k) * hc + j) * dim);
  for (int s = 0; s < d.stages; ++s) stage_forward(s, state, state.pos, ids, h);

  DsparkDraft out;
  out.hidden.resize(static_cast<size_t>(B) * dim);
  hc_head(w_.dspark.hc_head, h, B, hc, dim, c_.rms_norm_eps, c_.hc_eps, out.hidden);
  std::vector<float> normed(out.hidden.size());
  rmsnorm(out.hidden, w_.dspark.norm, c_.rms_norm_eps, dim, normed);
  out.logits = m_.head(normed);

  // Row by row: the Markov bias of the previous token, then the row's token.
  const std::vector<float>& w1 = w_.dspark.markov_w1;
  const std::vector<float>& w2 = w_.dspark.markov_w2;
  const std::vector<float>& proj = w_.dspark.confidence;
  int prev = anchor;
  for (int k = 0; k < B; ++k) {
    const float* e = w1.data() + static_cast<size_t>(prev) * R;
    float* row = out.logits.data() + static_cast<size_t>(k) * V;
    for (int v = 0; v < V; ++v) {
      float bias = 0;
      for (int r = 0; r < R; ++r) bias += w2[static_cast<size_t>(v) * R + r] * e[r];
      row[v] += bias;
    }
    float conf = 0;
    for (int j = 0; j < dim; ++j) conf += proj[j] * out.hidden[static_cast<size_t>(k) * dim + j];
    for (int r = 0; r < R; ++r) conf += proj[dim + r] * e[r];
    out.confidence.push_back(conf);
    prev = choose ? choose(std::span<const float>(row, V))
                  : static_cast<int>(std::max_element(row, row + V) - row);  // the first of equal maxima, as torch
    DSV4_CHECK(prev >= 0 && prev < V, "DSpark: a chosen draft token ", prev, " is outside the vocabulary");
    out.tokens.push_back(prev);
  }
  return out;
}

}  // namespace dsv4
