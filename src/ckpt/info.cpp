// Counting from the expected-tensor list, so `info` and the loader can never disagree.
#include "ckpt/info.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/check.h"
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
    case SpecKind::floats: return (released_as_f32(s.name) ? 4.0 : 2.0) * s.numel();
  }
  return 0;
}

// "0-1, 3-59 step 2": sorted layer indices as runs of a constant step (three or more each).
std::string index_runs(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i + 1;
    if (i + 2 < v.size() && v[i + 1] - v[i] == v[i + 2] - v[i + 1])
      while (j + 1 < v.size() && v[j + 1] - v[j] == v[i + 1] - v[i]) ++j;
    if (!out.empty()) out += ", ";
    if (j > i + 1) {
      const int step = v[i + 1] - v[i];
      out += std::to_string(v[i]) + "-" + std::to_string(v[j]) + (step > 1 ? " step " + std::to_string(step) : "");
      i = j + 1;
    } else {
      out += std::to_string(v[i]);
      i = j;
    }
  }
  return out;
}

// Integral values as JSON integers (byte counts print as 1073741824, not 1.073741824e9).
nlohmann::json number(double x) {
  if (x == std::floor(x) && std::fabs(x) < 9e15) return static_cast<long long>(x);
  return x;
}

std::string count(long long n) {
  char buf[64];
  if (n >= 1000000000LL) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000LL) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else std::snprintf(buf, sizeof buf, "%lld", n);
  return buf;
}

}  // namespace

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

std::string drafter_layers(const ModelConfig& c) {
  if (c.dspark.stages) return std::to_string(c.dspark.stages) + " DSpark stage" + (c.dspark.stages == 1 ? "" : "s");
  return std::to_string(c.num_nextn_predict_layers) + " MTP";
}

std::string layer_table(const ModelConfig& c) {
  struct Kind {
    std::string what;
    std::vector<int> layers;
    bool mtp = false;
  };
  std::vector<std::pair<int, Kind>> kinds;  // by compress ratio, in order of first appearance
  for (int l = 0; l < c.n_layers_total(); ++l) {
    const int r = c.compress_ratio(l);
    auto it = std::find_if(kinds.begin(), kinds.end(), [&](const auto& k) { return k.first == r; });
    if (it == kinds.end()) {
      Kind k;
      k.what = std::string(kind_name(r)) + (r == 0 ? " (sliding window only)"
                                                    : r == 4 ? " (ratio 4, indexer top " + std::to_string(c.index_topk) + ")"
                                                             : " (ratio " + std::to_string(r) + ")");
      kinds.emplace_back(r, k);
      it = kinds.end() - 1;
    }
    if (l < c.num_hidden_layers) it->second.layers.push_back(l);
    else it->second.mtp = true;
  }
  size_t width = 0;
  for (const auto& [r, k] : kinds) width = std::max(width, k.what.size());
  std::ostringstream o;
  o << "layers: " << c.num_hidden_layers << " + " << drafter_layers(c) << "\n";
  for (const auto& [r, k] : kinds) {
    o << "  " << k.what << std::string(width - k.what.size() + 2, ' ');
    const size_t n = k.layers.size();
    if (n) o << n << (n == 1 ? " layer: " : " layers: ") << index_runs(k.layers);
    if (k.mtp) o << (n ? "; " : "") << (c.dspark.stages ? "DSpark" : "MTP");
    o << "\n";
  }
  return o.str();
}

KvSizes kv_sizes(const ModelConfig& c, long long ctx, KvStorage storage) {
  const int D = c.head_dim, ID = c.index_head_dim, rd = c.qk_rope_head_dim;
  double row = 0, key = 0;  // bytes of one kv row [head_dim] and one index key [index_head_dim]
  switch (storage) {
    case KvStorage::bf16: row = 2.0 * D, key = 2.0 * ID; break;
    case KvStorage::f32: row = 4.0 * D, key = 4.0 * ID; break;
    case KvStorage::packed:
      row = KvRows::row_bytes(KvFormat::fp8_nope, D, rd);
      key = KvRows::row_bytes(KvFormat::fp4, ID, 0);
      break;
  }
  KvSizes k;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const int r = c.compress_ratio(l);
    k.at_ctx.window += row * static_cast<double>(std::min<long long>(ctx, c.sliding_window));
    if (r == 0) continue;
    const double entries = static_cast<double>(ctx / r);
    const double coff = r == 4 ? 2 : 1;
    // Compressor pending rows: kv + score, [coff * r, coff * D] each, always float32.
    k.at_ctx.state += 2 * 4.0 * coff * r * coff * D;
    if (r == 4) {
      k.at_ctx.csa += row * entries;
      k.at_ctx.indexer += key * entries;
      k.at_ctx.state += 2 * 4.0 * 2 * 4 * 2 * ID;
      k.per_token.csa += row / r;
      k.per_token.indexer += key / r;
    } else {
      k.at_ctx.hca += row * entries;
      k.per_token.hca += row / r;
    }
  }
  return k;
}

ModelInfo model_info(const ModelConfig& c, long long ctx, int ranks) {
  DSV4_CHECK(ranks >= 1, "--ranks must be >= 1, got ", ranks);
  ModelInfo i;
  i.ctx = ctx;
  i.ranks = ranks;
  i.drafter = c.dspark.stages ? "dspark" : c.num_nextn_predict_layers ? "mtp" : "none";
  i.dspark_stages = c.dspark.stages;
  for (int r = 0; r < ranks && ranks > 1; ++r) {
    double bytes = 0;
    for (const TensorSpec& s : expected_tensors(c, {true, r, ranks})) bytes += spec_bytes(s);
    i.bytes_per_rank = std::max(i.bytes_per_rank, bytes);
  }
  long long expert_params = 0;  // one routed expert
  for (const TensorSpec& s : expected_tensors(c)) {
    const long long p = s.kind == SpecKind::scale ? 0 : s.logical_params();
    i.params_total += p;
    (s.mtp ? i.params_mtp : i.params_main) += p;
    if (s.mtp) i.bytes_drafter += spec_bytes(s);
    if (s.routed_expert && !s.mtp) i.params_routed_experts += p;
    i.bytes_expected += spec_bytes(s);
  }
  expert_params = 3LL * c.hidden_size * c.moe_intermediate_size;
  i.params_active = i.params_main - i.params_routed_experts +
                    static_cast<long long>(c.num_hidden_layers) * c.num_experts_per_tok * expert_params;

  std::ostringstream kinds;
  for (int l = 0; l < c.n_layers_total(); ++l) {
    const int r = c.compress_ratio(l);
    if (l == c.num_hidden_layers) kinds << (c.dspark.stages ? "| dspark: " : "| mtp: ");
    kinds << kind_name(r);
    if (r > 4) kinds << "(" << r << ")";
    kinds << " ";
    if (l < c.num_hidden_layers) (r == 0 ? i.n_swa : r == 4 ? i.n_csa : i.n_hca)++;
  }
  i.layer_kinds = kinds.str();
  if (!i.layer_kinds.empty()) i.layer_kinds.pop_back();
  i.kv_bf16 = kv_sizes(c, ctx, KvStorage::bf16);
  i.kv_packed = kv_sizes(c, ctx, KvStorage::packed);
  i.kv_f32 = kv_sizes(c, ctx, KvStorage::f32);
  return i;
}

nlohmann::json info_json(const ModelInfo& i) {
  auto kv = [](const KvBytes& k) {
    return nlohmann::json{{"window", number(k.window)}, {"csa", number(k.csa)}, {"hca", number(k.hca)},
                          {"indexer", number(k.indexer)}, {"compressor_state", number(k.state)},
                          {"total", number(k.total())}};
  };
  return {{"params_total", i.params_total}, {"params_main", i.params_main},
          {"params_mtp", i.params_mtp}, {"drafter", i.drafter}, {"dspark_stages", i.dspark_stages},
          {"bytes_drafter", number(i.bytes_drafter)}, {"params_active", i.params_active},
          {"bytes_on_disk_expected", number(i.bytes_expected)}, {"layer_kinds", i.layer_kinds},
          {"n_swa", i.n_swa}, {"n_csa", i.n_csa}, {"n_hca", i.n_hca}, {"ctx", i.ctx},
          {"kv_elem_bytes", 2}, {"kv_bytes_per_token", kv(i.kv_bf16.per_token)},
          {"kv_bytes_at_ctx", kv(i.kv_bf16.at_ctx)},
          {"kv_bytes_per_token_compact", kv(i.kv_packed.per_token)},
          {"kv_bytes_at_ctx_compact", kv(i.kv_packed.at_ctx)},
          {"kv_bytes_per_token_f32", kv(i.kv_f32.per_token)},
          {"kv_bytes_at_ctx_f32", kv(i.kv_f32.at_ctx)}, {"ranks", i.ranks},
          {"bytes_per_rank", number(i.ranks > 1 ? i.bytes_per_rank : i.bytes_expected)},
          {"kv_bytes_at_ctx_compact_per_rank", number(i.kv_packed.at_ctx.total())}};
}

std::string info_text(const ModelConfig& c, const ModelInfo& i) {
  std::ostringstream o;
  o << "model: dim " << c.hidden_size << ", " << c.num_hidden_layers << " layers + " << drafter_layers(c) << ", " << c.num_attention_heads << " heads x " << c.head_dim
    << ", " << c.n_routed_experts << " experts (top " << c.num_experts_per_tok << ") + "
    << c.n_shared_experts << " shared, vocab " << c.vocab_size << "\n";
  o << "experts: " << (c.expert_dtype == ExpertDtype::fp4 ? "FP4 (e2m1, 1x32 ue8m0 scales)" : "FP8 (e4m3, 128x128 scales)")
    << ", gate " << score_func_name(c.scoring_func) << ", " << c.num_hash_layers << " hash-routed layer"
    << (c.num_hash_layers == 1 ? "" : "s") << "\n";
  o << layer_table(c);
  o << "parameters: " << count(i.params_total) << " total (" << count(i.params_main) << " main + "
    << count(i.params_mtp) << (c.dspark.stages ? " DSpark" : " MTP") << "), " << count(i.params_active)
    << " active per token\n";
  if (c.dspark.stages) {
    const DsparkConfig& d = c.dspark;
    o << "drafter: DSpark, " << d.stages << " stages over the states of target layers";
    for (size_t k = 0; k < d.target_layer_ids.size(); ++k) o << (k ? ", " : " ") << d.target_layer_ids[k];
    o << "; blocks of " << d.block_size << " (the anchor + " << d.block_size - 1 << " x noise token "
      << d.noise_token_id << "), Markov bias rank " << d.markov_rank << "; " << count(i.params_mtp)
      << " parameters, " << human_bytes(i.bytes_drafter) << " on disk\n";
  }
  o << "bytes on disk (official dtypes): " << human_bytes(i.bytes_expected) << "\n";
  o << "kv cache: bf16 as the official engine | dsv4 (e4m3 + f32 rope dims, e2m1 index keys) | dsv4 "
       "--no-act-quant (f32)\n";
  auto row = [&](const char* name, double b, double p, double f) {
    char label[32];
    std::snprintf(label, sizeof label, "  %-18s", name);
    o << label << human_bytes(b) << " | " << human_bytes(p) << " | " << human_bytes(f) << "\n";
  };
  auto table = [&](auto pick, bool with_window) {
    const KvBytes &b = pick(i.kv_bf16), &p = pick(i.kv_packed), &f = pick(i.kv_f32);
    if (with_window) row("window", b.window, p.window, f.window);
    row("CSA compressed", b.csa, p.csa, f.csa);
    row("CSA indexer keys", b.indexer, p.indexer, f.indexer);
    row("HCA compressed", b.hca, p.hca, f.hca);
    if (with_window) row("compressor state", b.state, p.state, f.state);
    row("total", b.total(), p.total(), f.total());
  };
  o << " per token (growth):\n";
  table([](const KvSizes& k) -> const KvBytes& { return k.per_token; }, false);
  o << " at ctx " << i.ctx << ":\n";
  table([](const KvSizes& k) -> const KvBytes& { return k.at_ctx; }, true);
  if (i.ranks > 1)
    o << "model parallel, " << i.ranks << " ranks (dsv4 convert --model-parallel " << i.ranks
      << "): weights " << human_bytes(i.bytes_per_rank) << " per rank (wo_a in BF16); KV cache "
      << human_bytes(i.kv_packed.at_ctx.total()) << " per rank at ctx " << i.ctx
      << " (dsv4's compact cache; not divided: the one KV head serves every rank's query heads)\n";
  return o.str();
}

std::string model_summary(const ModelConfig& c) {
  const ModelInfo i = model_info(c, 0);
  return count(i.params_total) + " parameters (" + count(i.params_active) + " active per token), " +
         std::to_string(c.num_hidden_layers) + " layers + " + drafter_layers(c) + ", vocabulary " +
         std::to_string(c.vocab_size);
}

}  // namespace dsv4
