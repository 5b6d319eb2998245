// Model facts for `dsv4 info`, from a ModelConfig alone (and, with weights, the checkpoint):
// parameter counts, bytes on disk, layer kinds and KV-cache sizes by cache kind.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/config.h"
#include "model/kv_cache.h"

namespace dsv4 {

struct KvBytes {
  double window = 0, csa = 0, hca = 0, indexer = 0, state = 0;  // bytes
  double total() const { return window + csa + hca + indexer + state; }
};

// How the cached rows are stored: bf16 as the official engine; dsv4's packed rows (act_quant on,
// the production mode: e4m3 + ue8m0 non-rope dims and float32 rope dims, e2m1 + ue8m0 index
// keys, see model/kv_cache.h); dsv4's float32 rows (--no-act-quant). The compressors' pending
// rows are float32 in every case.
enum class KvStorage { bf16, packed, f32 };

struct KvSizes {
  KvBytes per_token;  // growth per additional token (window excluded)
  KvBytes at_ctx;     // at ctx tokens, main layers
};

KvSizes kv_sizes(const ModelConfig& c, long long ctx, KvStorage storage);

struct ModelInfo {
  long long params_total = 0, params_main = 0, params_active = 0;
  long long params_mtp = 0;    // the drafter's: the MTP layers or the DSpark stages
  double bytes_drafter = 0;    // the drafter's, on disk in the official dtypes
  std::string drafter;         // "mtp", "dspark" or "none"
  int dspark_stages = 0;
  long long params_routed_experts = 0;
  double bytes_expected = 0;            // on disk, in the official dtypes
  std::string layer_kinds;              // e.g. "SWA CSA HCA CSA | mtp: SWA"
  int n_swa = 0, n_csa = 0, n_hca = 0;
  long long ctx = 0;
  KvSizes kv_bf16, kv_packed, kv_f32;  // see KvStorage
  // Model parallel (dsv4 convert --model-parallel ranks): the largest rank's weights in the
  // converted dtypes (wo_a in BF16). The KV cache is not divided: the one KV head serves every
  // query head, so each rank holds all of it.
  int ranks = 1;
  double bytes_per_rank = 0;
};

// ranks > 1: also the per-rank sizes (Error if the config does not split among them).
ModelInfo model_info(const ModelConfig& c, long long ctx, int ranks = 1);
// Keys: kv_bytes_per_token / kv_bytes_at_ctx are bf16 (kv_elem_bytes 2, as always);
// *_compact are dsv4's packed cache, *_f32 its float32 cache.
nlohmann::json info_json(const ModelInfo& i);
std::string info_text(const ModelConfig& c, const ModelInfo& i);
// One line per layer kind with the layers of that kind, e.g. "  CSA (ratio 4, indexer top 512)  20 layers: 2-40 step 2".
std::string layer_table(const ModelConfig& c);
std::string human_bytes(double bytes);  // "1.25 GiB": powers of 1024 throughout
// "1 MTP", "3 DSpark stages": what follows the target layers.
std::string drafter_layers(const ModelConfig& c);
// One line for banners: "8.65M parameters (5.02M active per token), 4 layers + 1 MTP, vocabulary 4096".
std::string model_summary(const ModelConfig& c);

}  // namespace dsv4
