// Weight loading: one pass of validation over the expected-tensor list, then typed views.
#include "model/weights.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>

#include "core/check.h"
#include "core/thread_pool.h"
#include "model/tensor_spec.h"
#include "quant/formats.h"

namespace dsv4 {

namespace {

// The index of the first NaN or infinity in a tensor's data, or -1. FP8 e4m3 (the "fn" kind)
// has NaN at S.1111.111 and no infinity; ue8m0 scales have NaN at 0xFF; FP4 and integers have neither.
long long first_non_finite(const TensorView& t) {
  const size_t n = static_cast<size_t>(t.numel());
  const uint8_t* d = t.data;
  auto scan = [&](auto bad) -> long long {
    for (size_t i = 0; i < n; ++i)
      if (bad(i)) return static_cast<long long>(i);
    return -1;
  };
  auto u16 = [&](size_t i) {
    uint16_t v;
    std::memcpy(&v, d + 2 * i, 2);
    return v;
  };
  switch (t.dtype) {
    case DType::F32:
      return scan([&](size_t i) {
        uint32_t v;
        std::memcpy(&v, d + 4 * i, 4);
        return (v & 0x7F800000u) == 0x7F800000u;
      });
    case DType::BF16: return scan([&](size_t i) { return (u16(i) & 0x7F80u) == 0x7F80u; });
    case DType::F16: return scan([&](size_t i) { return (u16(i) & 0x7C00u) == 0x7C00u; });
    case DType::F8_E4M3: return scan([&](size_t i) { return (d[i] & 0x7F) == 0x7F; });
    case DType::F8_E8M0: return scan([&](size_t i) { return d[i] == 0xFF; });
    default: return -1;
  }
}

}  // namespace

void check_finite(const Checkpoint& ckpt, const std::vector<const TensorView*>& tensors) {
  std::vector<long long> bad(tensors.size(), -1);
  pool().parallel_for(tensors.size(), [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) bad[i] = first_non_finite(*tensors[i]);
  });
  for (size_t i = 0; i < tensors.size(); ++i)
    DSV4_CHECK(bad[i] < 0, tensors[i]->file, ": tensor '", tensors[i]->name, "' holds a NaN or infinity at element ",
               bad[i], " (of ", dtype_name(tensors[i]->dtype), " ", shape_str(tensors[i]->shape), "); ", ckpt.dir(),
               " is damaged. DSV4_ALLOW_NON_FINITE=1 loads it anyway");
}

void validate_checkpoint(const Checkpoint& ckpt, const ModelConfig& cfg) {
  std::set<std::string> expected;
  std::vector<const TensorView*> views;
  for (const TensorSpec& s : expected_tensors(cfg, ckpt.layout())) {
    expected.insert(s.name);
    const TensorView* t = ckpt.find(s.name);
    DSV4_CHECK(t, ckpt.dir(), ": missing tensor '", s.name, "' (expected ", s.dtypes_str(),
               " of shape ", shape_str(s.shape), ")");
    DSV4_CHECK(t->shape == s.shape, t->file, ": tensor '", s.name, "' has shape ",
               shape_str(t->shape), " but the config needs ", shape_str(s.shape));
    DSV4_CHECK(s.dtype_allowed(t->dtype), t->file, ": tensor '", s.name, "' has dtype ",
               dtype_name(t->dtype), ", expected ", s.dtypes_str());
    views.push_back(t);
  }
  // Every value is read once (in parallel) so that a damaged tensor is named at load rather
  // than turning into NaN logits or silent nonsense later.
  const char* allow = std::getenv("DSV4_ALLOW_NON_FINITE");
  if (!(allow && std::string(allow) == "1")) check_finite(ckpt, views);
  int unknown = 0;
  for (const auto& [name, view] : ckpt.tensors()) {
    if (expected.count(name) || ignorable_tensor(name)) continue;
    if (unknown++ < 5) std::cerr << "warning: " << view->file << ": unused tensor '" << name << "'\n";
  }
  if (unknown > 5) std::cerr << "warning: " << unknown - 5 << " more unused tensors\n";
}

namespace {

class Reader {
 public:
  Reader(const Checkpoint& ckpt, ModelWeights& w) : ckpt_(ckpt), w_(w) {}

  const TensorView& view(const std::string& name) const {
    const TensorView* t = ckpt_.find(name);
    DSV4_CHECK(t, ckpt_.dir(), ": missing tensor '", name, "'");
    return *t;
  }
  std::vector<float> floats(const std::string& name) const { return to_f32(view(name)); }

  // fp8 linear: name.weight (F8_E4M3) + name.scale; fp4 when the weight is packed I8.
  Linear quantized(const std::string& name) const {
    const TensorView& w = view(name + ".weight");
    const TensorView& s = view(name + ".scale");
    Linear l;
    l.format = w.dtype == DType::F8_E4M3 ? WeightFormat::fp8 : WeightFormat::fp4;
    l.out = static_cast<int>(w.shape[0]);
    l.in = static_cast<int>(w.shape[1]) * (l.format == WeightFormat::fp4 ? 2 : 1);
    l.weight = w.data;
    l.scale = s.data;
    l.scale_f32 = s.dtype == DType::F32;
    return l;
  }

  // A float matrix, used in place when BF16 or F32.
  Linear plain(const std::string& name) {
    const TensorView& t = view(name);
    Linear l;
    l.out = static_cast<int>(t.shape[0]);
    l.in = static_cast<int>(t.shape[1]);
    if (t.dtype == DType::BF16) {
      l.format = WeightFormat::bf16;
      l.weight = t.data;
    } else if (t.dtype == DType::F32) {
      l.format = WeightFormat::f32;
      l.weight = t.data;
    } else {
      std::vector<float> f = to_f32(t);
      auto& bytes = w_.owned.emplace_back(f.size() * 4);
      std::memcpy(bytes.data(), f.data(), bytes.size());
      l.format = WeightFormat::f32;
      l.weight = bytes.data();
    }
    return l;
  }

  std::vector<int> indices(const std::string& name, int limit) const {
    const TensorView& t = view(name);
    std::vector<int> out(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < out.size(); ++i) {
      long long v;
      if (t.dtype == DType::I32) {
        int32_t x;
        std::memcpy(&x, t.data + 4 * i, 4);
        v = x;
      } else {
        int64_t x;
        std::memcpy(&x, t.data + 8 * i, 8);
        v = x;
      }
      DSV4_CHECK(v >= 0 && v < limit, t.file, ": tensor '", name, "' entry ", i, " = ", v,
                 " is not an expert index in [0, ", limit, ")");
      out[i] = static_cast<int>(v);
    }
    return out;
  }

  HcParams hc(const std::string& prefix) const {
    return HcParams::from(floats(prefix + "_fn"), floats(prefix + "_base"), floats(prefix + "_scale"));
  }

  CompressorWeights compressor(const std::string& p, int ratio, int head_dim) {
    CompressorWeights c;
    c.ratio = ratio;
    c.head_dim = head_dim;
    c.overlap = ratio == 4;
    c.ape = floats(p + ".ape");
    c.wkv = plain(p + ".wkv.weight");
    c.wgate = plain(p + ".wgate.weight");
    c.norm = floats(p + ".norm.weight");
    return c;
  }

  ExpertWeights expert(const std::string& p) const {
    return {quantized(p + ".w1"), quantized(p + ".w2"), quantized(p + ".w3")};
  }

  BlockWeights block(const std::string& p, int layer, const ModelConfig& c) {
    BlockWeights b;
    b.layer = layer;
    b.compress_ratio = c.compress_ratio(layer);
    b.hash = layer < c.num_hash_layers;
    b.hc_attn = hc(p + ".hc_attn");
    b.hc_ffn = hc(p + ".hc_ffn");
    b.attn_norm = floats(p + ".attn_norm.weight");
    b.ffn_norm = floats(p + ".ffn_norm.weight");
    AttentionWeights& a = b.attn;
    const std::string ap = p + ".attn";
    a.attn_sink = floats(ap + ".attn_sink");
    a.wq_a = quantized(ap + ".wq_a");
    a.q_norm = floats(ap + ".q_norm.weight");
    a.wq_b = quantized(ap + ".wq_b");
    a.wkv = quantized(ap + ".wkv");
    a.kv_norm = floats(ap + ".kv_norm.weight");
    // A converted checkpoint holds wo_a dequantized (BF16, no scale), as the reference applies it.
    a.wo_a = ckpt_.layout().converted ? plain(ap + ".wo_a.weight") : quantized(ap + ".wo_a");
    a.wo_b = quantized(ap + ".wo_b");
    if (b.compress_ratio) a.compressor = compressor(ap + ".compressor", b.compress_ratio, c.head_dim);
    if (b.compress_ratio == 4) {
      IndexerWeights ix;
      ix.wq_b = quantized(ap + ".indexer.wq_b");
      ix.weights_proj = plain(ap + ".indexer.weights_proj.weight");
      ix.compressor = compressor(ap + ".indexer.compressor", 4, c.index_head_dim);
      a.indexer = std::move(ix);
    }
    MoeWeights& f = b.ffn;
    const std::string fp = p + ".ffn";
    f.gate = plain(fp + ".gate.weight");
    if (b.hash) f.tid2eid = indices(fp + ".gate.tid2eid", c.n_routed_experts);
    else f.bias = floats(fp + ".gate.bias");
    // A model-parallel rank holds its share of the experts, in index order (see Layout).
    const Layout& lay = ckpt_.layout();
    const auto [e0, e1] = expert_range(c.n_routed_experts, lay.rank, lay.world);
    f.expert_begin = e0;
    for (int e = e0; e < e1; ++e)
      f.experts.push_back(expert(fp + ".experts." + std::to_string(e)));
    if (c.n_shared_experts) f.shared = expert(fp + ".shared_experts");
    return b;
  }

 private:
  const Checkpoint& ckpt_;
  ModelWeights& w_;
};

}  // namespace

HcParams HcParams::from(const std::vector<float>& fn, std::vector<float> base, std::vector<float> scale) {
  HcParams p{{}, std::move(base), std::move(scale)};
  constexpr size_t B = kHcMixBlock;
  const size_t mix = p.base.size(), flat = fn.size() / mix, n_blocks = (mix + B - 1) / B;
  p.fn_blocks.assign(n_blocks * flat * B, 0.0f);
  for (size_t m = 0; m < mix; ++m)
    for (size_t k = 0; k < flat; ++k) p.fn_blocks[((m / B) * flat + k) * B + m % B] = fn[m * flat + k];
  return p;
}

std::unique_ptr<ModelWeights> load_weights(const Checkpoint& ckpt, const ModelConfig& cfg) {
  validate_checkpoint(ckpt, cfg);
  auto w = std::make_unique<ModelWeights>();
  Reader r(ckpt, *w);
  w->embed = r.plain("embed.weight");
  w->head = r.plain("head.weight");
  w->norm = r.floats("norm.weight");
  w->hc_head = r.hc("hc_head");
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    w->layers.push_back(r.block("layers." + std::to_string(l), l, cfg));
  for (int i = 0; i < cfg.num_nextn_predict_layers; ++i) {
    const std::string p = "mtp." + std::to_string(i);
    MtpWeights m;
    m.block = r.block(p, cfg.num_hidden_layers + i, cfg);
    m.e_proj = r.quantized(p + ".e_proj");
    m.h_proj = r.quantized(p + ".h_proj");
    m.enorm = r.floats(p + ".enorm.weight");
    m.hnorm = r.floats(p + ".hnorm.weight");
    m.norm = r.floats(p + ".norm.weight");
    m.hc_head = r.hc(p + ".hc_head");
    w->mtp.push_back(std::move(m));
  }
  const int stages = cfg.dspark.stages;
  for (int s = 0; s < stages; ++s)
    w->dspark.stages.push_back(r.block("mtp." + std::to_string(s), cfg.num_hidden_layers + s, cfg));
  if (stages > 0) {
    const std::string last = "mtp." + std::to_string(stages - 1);
    DsparkWeights& d = w->dspark;
    d.main_proj = r.quantized("mtp.0.main_proj");
    d.main_norm = r.floats("mtp.0.main_norm.weight");
    d.norm = r.floats(last + ".norm.weight");
    d.hc_head = r.hc(last + ".hc_head");
    d.markov_w1 = r.floats(last + ".markov_head.markov_w1.weight");
    d.markov_w2 = r.floats(last + ".markov_head.markov_w2.weight");
    d.confidence = r.floats(last + ".confidence_head.proj.weight");
  }
  return w;
}

}  // namespace dsv4
