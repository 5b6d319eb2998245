// The checkpoint layout of SPEC.md, written once.
#include "model/tensor_spec.h"

#include "core/check.h"

#include <algorithm>

namespace dsv4 {

namespace {

struct Builder {
  const ModelConfig& c;
  const Layout& layout;
  Splits splits;
  std::vector<TensorSpec>& out;
  int layer;
  bool mtp;
  bool routed = false;

  // split: the dimension divided among the ranks in a converted layout (-1: whole).
  void add(const std::string& name, std::vector<long long> shape, SpecKind kind, int split = -1) {
    if (!layout.converted || layout.world == 1) split = -1;
    if (split >= 0) {
      DSV4_CHECK(shape[split] % layout.world == 0, "cannot split '", name, "' ", shape_str(shape), " along dimension ",
                 split, " among ", layout.world, " ranks");
      shape[split] /= layout.world;
    }
    TensorSpec s{name, std::move(shape), kind, layer, routed, mtp};
    s.split_dim = split;
    out.push_back(std::move(s));
  }
  void fp8_linear(const std::string& p, long long o, long long i, int split = -1) {
    add(p + ".weight", {o, i}, SpecKind::fp8_weight, split);
    add(p + ".scale", {(o + 127) / 128, (i + 127) / 128}, SpecKind::scale, split);
  }
  void expert_linear(const std::string& p, long long o, long long i) {
    if (c.expert_dtype == ExpertDtype::fp8) return fp8_linear(p, o, i);
    add(p + ".weight", {o, i / 2}, SpecKind::fp4_weight);
    add(p + ".scale", {o, i / 32}, SpecKind::scale);
  }
  void compressor(const std::string& p, int ratio, long long head_dim) {
    const long long coff = ratio == 4 ? 2 : 1;
    add(p + ".ape", {ratio, coff * head_dim}, SpecKind::floats);
    add(p + ".wkv.weight", {coff * head_dim, c.hidden_size}, SpecKind::floats);
    add(p + ".wgate.weight", {coff * head_dim, c.hidden_size}, SpecKind::floats);
    add(p + ".norm.weight", {head_dim}, SpecKind::floats);
  }

  void block(const std::string& p) {
    const long long dim = c.hidden_size, hc = c.hc_mult, mix = (2 + hc) * hc;
    const long long H = c.num_attention_heads, D = c.head_dim, G = c.o_groups;
    for (const char* k : {"attn", "ffn"}) {
      add(p + ".hc_" + k + "_fn", {mix, hc * dim}, SpecKind::floats);
      add(p + ".hc_" + k + "_base", {mix}, SpecKind::floats);
      add(p + ".hc_" + k + "_scale", {3}, SpecKind::floats);
    }
    add(p + ".attn_norm.weight", {dim}, SpecKind::floats);
    add(p + ".ffn_norm.weight", {dim}, SpecKind::floats);
    const std::string a = p + ".attn";
    const int heads = splits.heads ? 0 : -1, index_heads = splits.index_heads ? 0 : -1;
    add(a + ".attn_sink", {H}, SpecKind::floats, heads);
    fp8_linear(a + ".wq_a", c.q_lora_rank, dim);
    add(a + ".q_norm.weight", {c.q_lora_rank}, SpecKind::floats);
    fp8_linear(a + ".wq_b", H * D, c.q_lora_rank, heads);
    fp8_linear(a + ".wkv", D, dim);
    add(a + ".kv_norm.weight", {D}, SpecKind::floats);
    if (layout.converted) {
      add(a + ".wo_a.weight", {G * c.o_lora_rank, H * D / G}, SpecKind::floats, heads);
      out.back().dequantized = true;
    } else {
      fp8_linear(a + ".wo_a", G * c.o_lora_rank, H * D / G);
    }
    fp8_linear(a + ".wo_b", dim, G * c.o_lora_rank, splits.wo_b ? 1 : -1);
    const int ratio = c.compress_ratio(layer);
    if (ratio) compressor(a + ".compressor", ratio, D);
    if (ratio == 4) {
      fp8_linear(a + ".indexer.wq_b", (long long)c.index_n_heads * c.index_head_dim, c.q_lora_rank, index_heads);
      add(a + ".indexer.weights_proj.weight", {c.index_n_heads, dim}, SpecKind::floats, index_heads);
      compressor(a + ".indexer.compressor", 4, c.index_head_dim);
    }
    const std::string f = p + ".ffn";
    add(f + ".gate.weight", {c.n_routed_experts, dim}, SpecKind::floats);
    if (layer < c.num_hash_layers)
      add(f + ".gate.tid2eid", {c.vocab_size, c.num_experts_per_tok}, SpecKind::index);
    else
      add(f + ".gate.bias", {c.n_routed_experts}, SpecKind::floats);
    const long long inter = c.moe_intermediate_size;
    routed = true;
    const auto [e0, e1] = layout.converted ? expert_range(c.n_routed_experts, layout.rank, layout.world)
                                           : std::pair<int, int>{0, c.n_routed_experts};
    for (int e = e0; e < e1; ++e) {
      const std::string x = f + ".experts." + std::to_string(e);
      expert_linear(x + ".w1", inter, dim);
      expert_linear(x + ".w2", dim, inter);
      expert_linear(x + ".w3", inter, dim);
    }
    routed = false;
    if (c.n_shared_experts) {
      fp8_linear(f + ".shared_experts.w1", inter, dim);
      fp8_linear(f + ".shared_experts.w2", dim, inter);
      fp8_linear(f + ".shared_experts.w3", inter, dim);
    }
  }

  void hc_head(const std::string& p) {
    const long long hc = c.hc_mult;
    add(p + "hc_head_fn", {hc, hc * c.hidden_size}, SpecKind::floats);
    add(p + "hc_head_base", {hc}, SpecKind::floats);
    add(p + "hc_head_scale", {1}, SpecKind::floats);
  }
};

}  // namespace

long long TensorSpec::numel() const {
  long long n = 1;
  for (long long d : shape) n *= d;
  return n;
}

long long TensorSpec::logical_params() const {
  return kind == SpecKind::fp4_weight ? 2 * numel() : numel();
}

DType released_dtype(const TensorSpec& s) {
  switch (s.kind) {
    case SpecKind::fp8_weight: return DType::F8_E4M3;
    case SpecKind::fp4_weight: return DType::I8;
    case SpecKind::scale: return DType::F8_E8M0;
    case SpecKind::index: return DType::I32;
    case SpecKind::floats: return released_as_f32(s.name) ? DType::F32 : DType::BF16;
  }
  return DType::BF16;
}

bool TensorSpec::dtype_allowed(DType t) const {
  switch (kind) {
    case SpecKind::fp8_weight: return t == DType::F8_E4M3;
    case SpecKind::fp4_weight: return t == DType::I8 || t == DType::U8;
    case SpecKind::scale: return t == DType::F8_E8M0 || t == DType::F32;
    case SpecKind::floats: return t == DType::BF16 || t == DType::F16 || t == DType::F32;
    case SpecKind::index: return t == DType::I32 || t == DType::I64;
  }
  return false;
}

const char* TensorSpec::dtypes_str() const {
  switch (kind) {
    case SpecKind::fp8_weight: return "F8_E4M3";
    case SpecKind::fp4_weight: return "I8 (packed FP4)";
    case SpecKind::scale: return "F8_E8M0 or F32";
    case SpecKind::floats: return "BF16, F16 or F32";
    case SpecKind::index: return "I32 or I64";
  }
  return "?";
}

Splits splits_of(const ModelConfig& c, int world) {
  Splits s;
  if (world <= 1) return s;
  const long long H = c.num_attention_heads, G = c.o_groups, blocks = 128LL * world;
  s.vocab = c.vocab_size % world == 0;
  s.heads = H % world == 0 && G % world == 0 && (H * c.head_dim) % blocks == 0;
  s.wo_b = s.heads && (G * c.o_lora_rank) % blocks == 0;
  s.index_heads = c.index_n_heads % world == 0 && (static_cast<long long>(c.index_n_heads) * c.index_head_dim) % blocks == 0;
  return s;
}

std::pair<int, int> expert_range(int n_experts, int rank, int world) {
  return {static_cast<int>(static_cast<long long>(rank) * n_experts / world),
          static_cast<int>(static_cast<long long>(rank + 1) * n_experts / world)};
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& c, const Layout& layout) {
  DSV4_CHECK(layout.world >= 1 && layout.rank >= 0 && layout.rank < layout.world, "rank ", layout.rank,
             " is not one of ", layout.world, " ranks");
  DSV4_CHECK(layout.world <= std::max(1, c.n_routed_experts), "more ranks (", layout.world, ") than routed experts (",
             c.n_routed_experts, ")");
  std::vector<TensorSpec> out;
  const Splits splits = layout.converted ? splits_of(c, layout.world) : Splits{};
  Builder g{c, layout, splits, out, -1, false};
  const int vocab = splits.vocab ? 0 : -1;
  g.add("embed.weight", {c.vocab_size, c.hidden_size}, SpecKind::floats, vocab);
  g.add("head.weight", {c.vocab_size, c.hidden_size}, SpecKind::floats, vocab);
  g.add("norm.weight", {c.hidden_size}, SpecKind::floats);
  g.hc_head("");
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    Builder b{c, layout, splits, out, l, false};
    b.block("layers." + std::to_string(l));
  }
  for (int i = 0; i < c.num_nextn_predict_layers; ++i) {
    Builder b{c, layout, splits, out, c.num_hidden_layers + i, true};
    const std::string p = "mtp." + std::to_string(i);
    b.block(p);
    b.fp8_linear(p + ".e_proj", c.hidden_size, c.hidden_size);
    b.fp8_linear(p + ".h_proj", c.hidden_size, c.hidden_size);
    for (const char* n : {".enorm", ".hnorm", ".norm"}) b.add(p + n + ".weight", {c.hidden_size}, SpecKind::floats);
    b.hc_head(p + ".");
  }
  // DSpark stages (0731): full blocks without embedding or head of their own; stage 0 projects
  // the captured target states, the last one holds the output norm, hc head, Markov head and
  // confidence head (as the reference's DSparkBlock keeps them).
  const DsparkConfig& d = c.dspark;
  for (int s = 0; s < d.stages; ++s) {
    Builder b{c, layout, splits, out, c.num_hidden_layers + s, true};
    const std::string p = "mtp." + std::to_string(s);
    b.block(p);
    if (s == 0) {
      b.fp8_linear(p + ".main_proj", c.hidden_size,
                   static_cast<long long>(c.hidden_size) * static_cast<long long>(d.target_layer_ids.size()));
      b.add(p + ".main_norm.weight", {c.hidden_size}, SpecKind::floats);
    }
    if (s == d.stages - 1) {
      b.add(p + ".norm.weight", {c.hidden_size}, SpecKind::floats);
      b.hc_head(p + ".");
      b.add(p + ".markov_head.markov_w1.weight", {c.vocab_size, d.markov_rank}, SpecKind::floats);
      b.add(p + ".markov_head.markov_w2.weight", {c.vocab_size, d.markov_rank}, SpecKind::floats);
      b.add(p + ".confidence_head.proj.weight", {1, c.hidden_size + d.markov_rank}, SpecKind::floats);
    }
  }
  return out;
}

bool released_as_f32(const std::string& name) {
  return name.find(".hc_") != std::string::npos || name.rfind("hc_", 0) == 0 ||
         name.find(".ape") != std::string::npos || name.find("attn_sink") != std::string::npos ||
         name.find("gate.bias") != std::string::npos;
}

bool multiplies_activations(const TensorSpec& s) {
  return s.shape.size() == 2 && s.kind != SpecKind::scale && s.kind != SpecKind::index &&
         s.name.find("hc_") == std::string::npos && s.name.find(".ape") == std::string::npos &&
         s.name != "embed.weight";
}

bool ignorable_tensor(const std::string& name) {
  // The Hugging Face release may repeat the shared embedding and head under mtp.N.
  return name.rfind("mtp.", 0) == 0 &&
         (name.find(".emb") != std::string::npos || name.find(".head.weight") != std::string::npos);
}

}  // namespace dsv4
