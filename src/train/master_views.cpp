#include "train/master_views.h"

#include "core/check.h"
#include "ops/rope.h"
#include "train/matmul.h"

namespace dsv4 {

Linear MasterViews::linear(const std::vector<float>& w, int out, int in) {
  DSV4_CHECK(w.size() == size_t(out) * in, "master view: ", w.size(), " values for [", out, ", ", in, "]");
  Linear l;
  l.format = WeightFormat::f32;
  l.out = out, l.in = in;
  l.weight = reinterpret_cast<const uint8_t*>(w.data());
  l.transposed = transposes_.emplace_back(transposed(w, out, in, out)).data();
  return l;
}

CompressorWeights MasterViews::compressor(const CompressorF32& c) {
  CompressorWeights w;
  w.ratio = c.ratio, w.head_dim = c.head_dim, w.overlap = c.overlap;
  w.ape = c.ape, w.norm = c.norm;
  w.wkv = linear(c.wkv, c.width(), c.dim);
  w.wgate = linear(c.wgate, c.width(), c.dim);
  return w;
}

AttentionWeights MasterViews::attention(const AttentionF32& a) {
  const int qd = a.heads * a.head_dim;
  AttentionWeights w;
  w.attn_sink = a.attn_sink, w.q_norm = a.q_norm, w.kv_norm = a.kv_norm;
  w.wq_a = linear(a.wq_a, a.q_lora, a.dim);
  w.wq_b = linear(a.wq_b, qd, a.q_lora);
  w.wkv = linear(a.wkv, a.head_dim, a.dim);
  w.wo_a = linear(a.wo_a, a.groups * a.o_lora, qd / a.groups);
  w.wo_b = linear(a.wo_b, a.dim, a.groups * a.o_lora);
  return w;
}

MoeWeights MasterViews::moe(const MoeF32& m, const MoeRouting& r, const ModelConfig& c) {
  const int dim = c.hidden_size, inter = c.moe_intermediate_size;
  auto expert = [&](const ExpertF32& e) {
    return ExpertWeights{linear(e.w1, inter, dim), linear(e.w2, dim, inter), linear(e.w3, inter, dim)};
  };
  MoeWeights w;
  w.gate = linear(m.gate, c.n_routed_experts, dim);
  w.bias = r.bias, w.tid2eid = r.tid2eid;
  for (const ExpertF32& e : m.experts) w.experts.push_back(expert(e));
  if (!m.shared.empty()) w.shared = expert(m.shared[0]);
  return w;
}

MtpWeights MasterViews::mtp_input(const MtpF32& m) {
  const int dim = static_cast<int>(m.enorm.size());
  MtpWeights w;
  w.e_proj = linear(m.e_proj, dim, dim);
  w.h_proj = linear(m.h_proj, dim, dim);
  w.enorm = m.enorm, w.hnorm = m.hnorm;
  return w;
}

ModelConfig attention_config(const AttentionF32& a, const Rope& rope) {
  ModelConfig c;
  c.hidden_size = a.dim;
  c.num_attention_heads = a.heads;
  c.head_dim = a.head_dim;
  c.qk_rope_head_dim = rope.dim();
  c.q_lora_rank = a.q_lora;
  c.o_groups = a.groups;
  c.o_lora_rank = a.o_lora;
  c.sliding_window = a.window;
  c.rms_norm_eps = a.eps;
  c.index_n_heads = a.indexer.heads;
  c.index_head_dim = a.indexer.head_dim;
  c.index_topk = a.indexer.topk;
  return c;
}

}  // namespace dsv4
