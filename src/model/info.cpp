// Counting from the expected-tensor list, so `info` and the loader can never disagree.
#include "model/info.h"

#include <cstdio>
#include <sstream>

#include "model/tensor_spec.h"

namespace dsv4 {

namespace {

const char* kind_name(int ratio) { return ratio == 0 ? "SWA" : ratio == 4 ? "CSA" : "HCA"; }

double spec_bytes(const TensorSpec& s) {
  // Official dtypes: fp8 / packed fp4 1 byte, ue8m0 scales 1 byte, BF16 matrices and norms 2,
  // and the F32 tensors of the release (hc_*, ape, attn_sink, gate bias), tid2eid I32.
  switch (s.kind) {
    case SpecKind::fp8_weight:
    case SpecKind::fp4_weight:
    case SpecKind::scale: return static_cast<double>(s.numel());
    case SpecKind::index: return 4.0 * s.numel();
    case SpecKind::floats: {
      const bool f32 = s.name.find(".hc_") != std::string::npos || s.name.rfind("hc_", 0) == 0 ||
                       s.name.find(".ape") != std::string::npos ||
                       s.name.find("attn_sink") != std::string::npos ||
                       s.name.find("gate.bias") != std::string::npos;
      return (f32 ? 4.0 : 2.0) * s.numel();
    }
  }
  return 0;
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

std::string count(long long n) {
  char buf[64];
  if (n >= 1000000000LL) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000LL) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else std::snprintf(buf, sizeof buf, "%lld", n);
  return buf;
}

}  // namespace

ModelInfo model_info(const ModelConfig& c, long long ctx, int elem_bytes) {
  ModelInfo i;
  i.ctx = ctx;
  i.elem_bytes = elem_bytes;
  long long expert_params = 0;  // one routed expert
  for (const TensorSpec& s : expected_tensors(c)) {
    const long long p = s.kind == SpecKind::scale ? 0 : s.logical_params();
    i.params_total += p;
    (s.mtp ? i.params_mtp : i.params_main) += p;
    if (s.routed_expert && !s.mtp) i.params_routed_experts += p;
    i.bytes_expected += spec_bytes(s);
  }
  expert_params = 3LL * c.hidden_size * c.moe_intermediate_size;
  i.params_active = i.params_main - i.params_routed_experts +
                    static_cast<long long>(c.num_hidden_layers) * c.num_experts_per_tok * expert_params;

  std::ostringstream kinds;
  for (int l = 0; l < c.n_layers_total(); ++l) {
    const int r = c.compress_ratio(l);
    if (l == c.num_hidden_layers) kinds << "| mtp: ";
    kinds << kind_name(r) << (r > 4 ? "(" + std::to_string(r) + ")" : "") << " ";
    if (l < c.num_hidden_layers) (r == 0 ? i.n_swa : r == 4 ? i.n_csa : i.n_hca)++;
  }
  i.layer_kinds = kinds.str();
  if (!i.layer_kinds.empty()) i.layer_kinds.pop_back();

  const double eb = elem_bytes, D = c.head_dim, ID = c.index_head_dim;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const int r = c.compress_ratio(l);
    i.kv_at_ctx.window += eb * D * static_cast<double>(std::min<long long>(ctx, c.sliding_window));
    if (r == 0) continue;
    const double entries = static_cast<double>(ctx / r);
    const double coff = r == 4 ? 2 : 1;
    // Compressor pending rows: kv + score, [coff * r, coff * D] each, always float32.
    i.kv_at_ctx.state += 2 * 4.0 * coff * r * coff * D;
    if (r == 4) {
      i.kv_at_ctx.csa += eb * D * entries;
      i.kv_at_ctx.indexer += eb * ID * entries;
      i.kv_at_ctx.state += 2 * 4.0 * 2 * 4 * 2 * ID;
      i.kv_per_token.csa += eb * D / r;
      i.kv_per_token.indexer += eb * ID / r;
    } else {
      i.kv_at_ctx.hca += eb * D * entries;
      i.kv_per_token.hca += eb * D / r;
    }
  }
  return i;
}

nlohmann::json info_json(const ModelInfo& i) {
  auto kv = [](const KvBytes& k) {
    return nlohmann::json{{"window", k.window}, {"csa", k.csa}, {"hca", k.hca},
                          {"indexer", k.indexer}, {"compressor_state", k.state}, {"total", k.total()}};
  };
  return {{"params_total", i.params_total}, {"params_main", i.params_main},
          {"params_mtp", i.params_mtp}, {"params_active", i.params_active},
          {"bytes_on_disk_expected", i.bytes_expected}, {"layer_kinds", i.layer_kinds},
          {"n_swa", i.n_swa}, {"n_csa", i.n_csa}, {"n_hca", i.n_hca}, {"ctx", i.ctx},
          {"kv_elem_bytes", i.elem_bytes}, {"kv_bytes_per_token", kv(i.kv_per_token)},
          {"kv_bytes_at_ctx", kv(i.kv_at_ctx)}};
}

std::string info_text(const ModelConfig& c, const ModelInfo& b, const ModelInfo& f) {
  std::ostringstream o;
  o << "model: dim " << c.hidden_size << ", " << c.num_hidden_layers << " layers + "
    << c.num_nextn_predict_layers << " MTP, " << c.num_attention_heads << " heads x " << c.head_dim
    << ", " << c.n_routed_experts << " experts (top " << c.num_experts_per_tok << ") + "
    << c.n_shared_experts << " shared, vocab " << c.vocab_size << "\n";
  o << "experts: " << (c.expert_dtype == ExpertDtype::fp4 ? "FP4 (e2m1, 1x32 ue8m0 scales)" : "FP8 (e4m3, 128x128 scales)")
    << ", gate " << score_func_name(c.scoring_func) << ", " << c.num_hash_layers << " hash-routed layers\n";
  o << "layers: " << b.layer_kinds << "  (" << b.n_swa << " SWA, " << b.n_csa << " CSA, " << b.n_hca << " HCA)\n";
  o << "parameters: " << count(b.params_total) << " total (" << count(b.params_main) << " main + "
    << count(b.params_mtp) << " MTP), " << count(b.params_active) << " active per token\n";
  o << "bytes on disk (official dtypes): " << human(b.bytes_expected) << "\n";
  o << "kv cache per token (growth, bf16 | f32): CSA " << human(b.kv_per_token.csa) << " | "
    << human(f.kv_per_token.csa) << ", indexer " << human(b.kv_per_token.indexer) << " | "
    << human(f.kv_per_token.indexer) << ", HCA " << human(b.kv_per_token.hca) << " | "
    << human(f.kv_per_token.hca) << ", total " << human(b.kv_per_token.total()) << " | "
    << human(f.kv_per_token.total()) << "\n";
  o << "kv cache at ctx " << b.ctx << " (bf16 as the official engine | dsv4 f32 now):\n";
  auto row = [&](const char* name, double x, double y) {
    char label[32];
    std::snprintf(label, sizeof label, "  %-18s", name);
    o << label << human(x) << " | " << human(y) << "\n";
  };
  row("window", b.kv_at_ctx.window, f.kv_at_ctx.window);
  row("CSA compressed", b.kv_at_ctx.csa, f.kv_at_ctx.csa);
  row("CSA indexer keys", b.kv_at_ctx.indexer, f.kv_at_ctx.indexer);
  row("HCA compressed", b.kv_at_ctx.hca, f.kv_at_ctx.hca);
  row("compressor state", b.kv_at_ctx.state, f.kv_at_ctx.state);
  row("total", b.kv_at_ctx.total(), f.kv_at_ctx.total());
  return o.str();
}

}  // namespace dsv4
