// Layout, initialization and the released format of the trainer's float weights. One visit()
// names every tensor; the shapes come from tensor_spec (expected_tensors), so what is trained
// is exactly what the loader validates.
#include "train/train_weights.h"

#include <cmath>
#include <random>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/tensor_spec.h"
#include "model/weights.h"
#include "quant/formats.h"
#include "quant/linear.h"

namespace dsv4 {

namespace {

// f(name, tensor) over every gradient parameter, in checkpoint order.
template <class W, class F>
void visit_block(const std::string& p, W& b, F& f) {
  f(p + ".hc_attn_fn", b.hc_attn.fn), f(p + ".hc_attn_base", b.hc_attn.base), f(p + ".hc_attn_scale", b.hc_attn.scale);
  f(p + ".hc_ffn_fn", b.hc_ffn.fn), f(p + ".hc_ffn_base", b.hc_ffn.base), f(p + ".hc_ffn_scale", b.hc_ffn.scale);
  f(p + ".attn_norm.weight", b.attn_norm), f(p + ".ffn_norm.weight", b.ffn_norm);
  auto& a = b.attn;
  const std::string q = p + ".attn";
  f(q + ".attn_sink", a.attn_sink), f(q + ".wq_a.weight", a.wq_a), f(q + ".q_norm.weight", a.q_norm);
  f(q + ".wq_b.weight", a.wq_b), f(q + ".wkv.weight", a.wkv), f(q + ".kv_norm.weight", a.kv_norm);
  f(q + ".wo_a.weight", a.wo_a), f(q + ".wo_b.weight", a.wo_b);
  auto compressor = [&](const std::string& cp, auto& k) {
    f(cp + ".ape", k.ape), f(cp + ".wkv.weight", k.wkv), f(cp + ".wgate.weight", k.wgate), f(cp + ".norm.weight", k.norm);
  };
  if (a.ratio) compressor(q + ".compressor", a.compressor);
  if (a.ratio == 4) {
    f(q + ".indexer.wq_b.weight", a.indexer.wq_b), f(q + ".indexer.weights_proj.weight", a.indexer.weights_proj);
    compressor(q + ".indexer.compressor", a.indexer.compressor);
  }
  const std::string m = p + ".ffn";
  f(m + ".gate.weight", b.ffn.gate);
  auto expert = [&](const std::string& ep, auto& e) {
    f(ep + ".w1.weight", e.w1), f(ep + ".w2.weight", e.w2), f(ep + ".w3.weight", e.w3);
  };
  for (size_t e = 0; e < b.ffn.experts.size(); ++e) expert(m + ".experts." + std::to_string(e), b.ffn.experts[e]);
  for (auto& s : b.ffn.shared) expert(m + ".shared_experts", s);
}

template <class W, class F>
void visit(W& w, F&& f) {
  f(std::string("embed.weight"), w.embed);
  for (size_t l = 0; l < w.layers.size(); ++l) visit_block("layers." + std::to_string(l), w.layers[l], f);
  f(std::string("norm.weight"), w.norm), f(std::string("head.weight"), w.head);
  f(std::string("hc_head_fn"), w.hc_head.fn), f(std::string("hc_head_base"), w.hc_head.base);
  f(std::string("hc_head_scale"), w.hc_head.scale);
  for (size_t i = 0; i < w.mtp.size(); ++i) {
    const std::string p = "mtp." + std::to_string(i);
    auto& m = w.mtp[i];
    visit_block(p, m.block, f);
    f(p + ".e_proj.weight", m.e_proj), f(p + ".h_proj.weight", m.h_proj);
    f(p + ".enorm.weight", m.enorm), f(p + ".hnorm.weight", m.hnorm), f(p + ".norm.weight", m.norm);
    f(p + ".hc_head_fn", m.hc_head.fn), f(p + ".hc_head_base", m.hc_head.base), f(p + ".hc_head_scale", m.hc_head.scale);
  }
}

}  // namespace

std::map<std::string, std::vector<long long>> param_shapes(const ModelConfig& c) {
  std::map<std::string, std::vector<long long>> shapes;
  for (const TensorSpec& s : expected_tensors(c)) {
    std::vector<long long> shape = s.shape;
    if (s.kind == SpecKind::fp4_weight) shape.back() *= 2;
    shapes[s.name] = shape;
  }
  return shapes;
}

namespace {

BlockF32 block_shell(const ModelConfig& c, int layer) {
  BlockF32 b;
  b.layer = layer;
  const int ratio = c.compress_ratio(layer);
  AttentionF32& a = b.attn;
  a.dim = c.hidden_size, a.heads = c.num_attention_heads, a.head_dim = c.head_dim, a.q_lora = c.q_lora_rank;
  a.groups = c.o_groups, a.o_lora = c.o_lora_rank, a.window = c.sliding_window, a.ratio = ratio, a.eps = c.rms_norm_eps;
  auto compressor = [&](CompressorF32& k, int r, int hd) { k.ratio = r, k.head_dim = hd, k.dim = c.hidden_size, k.overlap = r == 4; };
  if (ratio) compressor(a.compressor, ratio, c.head_dim);
  if (ratio == 4) {
    a.indexer.heads = c.index_n_heads, a.indexer.head_dim = c.index_head_dim, a.indexer.topk = c.index_topk;
    compressor(a.indexer.compressor, 4, c.index_head_dim);
  }
  b.ffn.experts.resize(c.n_routed_experts);
  b.ffn.shared.resize(c.n_shared_experts ? 1 : 0);
  if (layer < c.num_hash_layers) b.routing.tid2eid.assign(size_t(c.vocab_size) * c.num_experts_per_tok, 0);
  else b.routing.bias.assign(c.n_routed_experts, 0.0f);
  return b;
}

}  // namespace

void for_each_param(TrainWeights& w, const std::function<void(const std::string&, std::vector<float>&)>& f) {
  visit(w, [&](const std::string& name, std::vector<float>& v) { f(name, v); });
}

void for_each_param(const TrainWeights& w,
                    const std::function<void(const std::string&, const std::vector<float>&)>& f) {
  visit(w, [&](const std::string& name, const std::vector<float>& v) { f(name, v); });
}

void for_each_block(TrainWeights& w, const std::function<void(const std::string&, BlockF32&)>& f) {
  for (size_t l = 0; l < w.layers.size(); ++l) f("layers." + std::to_string(l), w.layers[l]);
  for (size_t i = 0; i < w.mtp.size(); ++i) f("mtp." + std::to_string(i), w.mtp[i].block);
}

void for_each_block(const TrainWeights& w, const std::function<void(const std::string&, const BlockF32&)>& f) {
  for_each_block(const_cast<TrainWeights&>(w), [&](const std::string& p, BlockF32& b) { f(p, b); });
}

bool uses_muon(const std::string& name, const std::vector<long long>& shape) {
  return shape.size() == 2 && name != "embed.weight" && name != "head.weight" && !name.ends_with(".ape");
}

TrainWeights zero_weights(const ModelConfig& c) {
  TrainWeights w;
  w.layers.reserve(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) w.layers.push_back(block_shell(c, l));
  for (int i = 0; i < c.num_nextn_predict_layers; ++i) {
    MtpF32 m;
    m.block = block_shell(c, c.num_hidden_layers + i);
    w.mtp.push_back(std::move(m));
  }
  const auto shapes = param_shapes(c);
  visit(w, [&](const std::string& name, std::vector<float>& v) {
    const auto it = shapes.find(name);
    DSV4_CHECK(it != shapes.end(), "internal: trainer tensor ", name, " is not in the checkpoint layout");
    long long n = 1;
    for (long long d : it->second) n *= d;
    v.assign(static_cast<size_t>(n), 0.0f);
  });
  return w;
}

TrainWeights init_weights(const ModelConfig& c, uint64_t seed) {
  TrainWeights w = zero_weights(c);
  std::mt19937_64 rng(seed);
  const float out_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(c.num_hidden_layers));
  const auto shapes = param_shapes(c);
  visit(w, [&](const std::string& name, std::vector<float>& v) {
    const std::vector<long long>& shape = shapes.at(name);
    float sd = 0, fill = 0;
    if (name.ends_with("norm.weight") || name.ends_with("_scale")) fill = 1;
    else if (name.ends_with("_base") || name.ends_with(".ape") || name.ends_with("attn_sink")) fill = 0;
    else if (name.ends_with("_fn")) sd = 0.01f;
    else if (name == "embed.weight") sd = 1;
    else {
      sd = 1.0f / std::sqrt(static_cast<float>(shape.back()));
      if (name.ends_with(".wo_b.weight") || name.ends_with(".w2.weight")) sd *= out_scale;
    }
    if (sd == 0) {
      std::fill(v.begin(), v.end(), fill);
      return;
    }
    std::normal_distribution<float> normal(0.0f, sd);
    for (float& x : v) x = normal(rng);
  });
  // Hash layers: token t takes k consecutive experts from a random first one (balanced).
  for_each_block(w, [&](const std::string&, BlockF32& b) {
    std::vector<int>& t2e = b.routing.tid2eid;
    const int k = c.num_experts_per_tok, E = c.n_routed_experts;
    for (size_t t = 0; t < t2e.size() / k; ++t) {
      const int first = static_cast<int>(rng() % E);
      for (int j = 0; j < k; ++j) t2e[t * k + j] = (first + j) % E;
    }
  });
  return w;
}

namespace {

// Quantization as the release stores weights: a power-of-two scale per block, e4m3 / e2m1
// values rounded to nearest even.
void quantize_fp8(const std::vector<float>& v, long long out, long long in, std::vector<uint8_t>& w,
                  std::vector<uint8_t>& s) {
  const long long bo = (out + 127) / 128, bi = (in + 127) / 128;
  w.resize(static_cast<size_t>(out * in));
  s.resize(static_cast<size_t>(bo * bi));
  for (long long r0 = 0; r0 < bo; ++r0)
    for (long long c0 = 0; c0 < bi; ++c0) {
      float amax = 0;
      for (long long r = r0 * 128; r < std::min(out, r0 * 128 + 128); ++r)
        for (long long k = c0 * 128; k < std::min(in, c0 * 128 + 128); ++k) amax = std::max(amax, std::fabs(v[r * in + k]));
      const float scale = amax > 0 ? pow2_ceil(amax / 448.0f) : 1.0f;
      s[r0 * bi + c0] = static_cast<uint8_t>(((f32_to_bits(scale) >> 23) & 0xFF));
      for (long long r = r0 * 128; r < std::min(out, r0 * 128 + 128); ++r)
        for (long long k = c0 * 128; k < std::min(in, c0 * 128 + 128); ++k)
          w[r * in + k] = encode_e4m3(round_e4m3(v[r * in + k] / scale));
    }
}

void quantize_fp4(const std::vector<float>& v, long long out, long long in, std::vector<uint8_t>& w,
                  std::vector<uint8_t>& s) {
  w.assign(static_cast<size_t>(out * in / 2), 0);
  s.resize(static_cast<size_t>(out * (in / 32)));
  for (long long r = 0; r < out; ++r)
    for (long long b = 0; b < in / 32; ++b) {
      const float* x = v.data() + r * in + b * 32;
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float scale = amax > 0 ? pow2_ceil(amax / 6.0f) : 1.0f;
      s[r * (in / 32) + b] = static_cast<uint8_t>(((f32_to_bits(scale) >> 23) & 0xFF));
      for (int i = 0; i < 32; ++i) {
        const uint8_t nib = encode_e2m1(round_e2m1(x[i] / scale));
        w[(r * in + b * 32 + i) / 2] |= static_cast<uint8_t>(i % 2 ? nib << 4 : nib);
      }
    }
}

}  // namespace

void write_released_checkpoint(const std::string& path, const ModelConfig& c, const TrainWeights& w,
                               const std::map<std::string, std::string>& metadata) {
  std::map<std::string, const std::vector<float>*> floats;
  std::map<std::string, const std::vector<int>*> ints;
  visit(w, [&](const std::string& name, const std::vector<float>& v) { floats[name] = &v; });
  for_each_block(w, [&](const std::string& p, const BlockF32& b) {
    if (!b.routing.bias.empty()) floats[p + ".ffn.gate.bias"] = &b.routing.bias;
    if (!b.routing.tid2eid.empty()) ints[p + ".ffn.gate.tid2eid"] = &b.routing.tid2eid;
  });

  const std::vector<TensorSpec> specs = expected_tensors(c);
  std::vector<TensorData> meta;
  for (const TensorSpec& s : specs) meta.push_back({s.name, released_dtype(s), s.shape, {}});
  std::vector<uint8_t> pending_scale;
  auto values = [&](const std::string& name) -> const std::vector<float>& {
    const auto it = floats.find(name);
    DSV4_CHECK(it != floats.end(), "internal: no trained values for ", name);
    return *it->second;
  };
  write_safetensors_streamed(path, meta, [&](size_t i, std::vector<uint8_t>& bytes) {
    const TensorSpec& s = specs[i];
    switch (s.kind) {
      case SpecKind::fp8_weight: return quantize_fp8(values(s.name), s.shape[0], s.shape[1], bytes, pending_scale);
      case SpecKind::fp4_weight: return quantize_fp4(values(s.name), s.shape[0], s.shape[1] * 2, bytes, pending_scale);
      case SpecKind::scale: bytes = std::move(pending_scale); return;
      case SpecKind::index: {
        const auto it = ints.find(s.name);
        DSV4_CHECK(it != ints.end(), "internal: no values for ", s.name);
        bytes = as_bytes(*it->second);
        return;
      }
      case SpecKind::floats: break;
    }
    const std::vector<float>& v = values(s.name);
    if (meta[i].dtype == DType::F32) {
      bytes = as_bytes(v);
      return;
    }
    std::vector<uint16_t> b(v.size());
    for (size_t k = 0; k < v.size(); ++k) b[k] = f32_to_bf16(v[k]);
    bytes = as_bytes(b);
  }, metadata);
}

TrainWeights read_checkpoint_weights(const std::string& dir, const ModelConfig& c) {
  Checkpoint ckpt(dir);
  validate_checkpoint(ckpt, c);  // every tensor present with its shape and dtype
  TrainWeights w = zero_weights(c);
  const auto shapes = param_shapes(c);
  auto tensor = [&](const std::string& name) -> const TensorView& {
    const TensorView* t = ckpt.find(name);
    DSV4_CHECK(t, dir, ": no tensor ", name);
    return *t;
  };
  auto read_into = [&](const std::string& name, std::vector<float>& v) {
    const TensorView& t = tensor(name);
    const std::vector<long long>& shape = shapes.at(name);
    if (t.dtype != DType::F8_E4M3 && t.dtype != DType::I8 && t.dtype != DType::U8) {
      v = to_f32(t);
      DSV4_CHECK(static_cast<long long>(v.size()) == shape[0] * (shape.size() > 1 ? shape[1] : 1), name,
                 ": unexpected size");
      return;
    }
    const TensorView& s = tensor(name.substr(0, name.size() - std::string(".weight").size()) + ".scale");
    Linear l;
    l.format = t.dtype == DType::F8_E4M3 ? WeightFormat::fp8 : WeightFormat::fp4;
    l.out = static_cast<int>(shape[0]), l.in = static_cast<int>(shape[1]);
    l.weight = t.data, l.scale = s.data, l.scale_f32 = s.dtype == DType::F32;
    for (int r = 0; r < l.out; ++r) l.dequant_row(r, v.data() + size_t(r) * l.in);
  };
  visit(w, read_into);
  for_each_block(w, [&](const std::string& p, BlockF32& b) {
    if (!b.routing.bias.empty()) b.routing.bias = to_f32(tensor(p + ".ffn.gate.bias"));
    if (!b.routing.tid2eid.empty()) {
      const TensorView& t = tensor(p + ".ffn.gate.tid2eid");
      for (size_t i = 0; i < b.routing.tid2eid.size(); ++i) {
        int64_t v = 0;
        if (t.dtype == DType::I64) std::memcpy(&v, t.data + 8 * i, 8);
        else {
          int32_t v32;
          std::memcpy(&v32, t.data + 4 * i, 4);
          v = v32;
        }
        DSV4_CHECK(v >= 0 && v < c.n_routed_experts, dir, ": ", p, ".ffn.gate.tid2eid holds expert ", v,
                   ", outside [0, ", c.n_routed_experts, ")");
        b.routing.tid2eid[i] = static_cast<int>(v);
      }
    }
  });
  return w;
}

}  // namespace dsv4
