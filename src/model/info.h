// Model facts for `dsv4 info`, from a ModelConfig alone (and, with weights, the checkpoint):
// parameter counts, bytes on disk, layer kinds and KV-cache sizes by cache kind.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/config.h"

namespace dsv4 {

struct KvBytes {
  double window = 0, csa = 0, hca = 0, indexer = 0, state = 0;  // bytes
  double total() const { return window + csa + hca + indexer + state; }
};

struct ModelInfo {
  long long params_total = 0, params_main = 0, params_mtp = 0, params_active = 0;
  long long params_routed_experts = 0;
  double bytes_expected = 0;            // on disk, in the official dtypes
  std::string layer_kinds;              // e.g. "SWA CSA HCA CSA | mtp: SWA"
  int n_swa = 0, n_csa = 0, n_hca = 0;
  long long ctx = 0;
  int elem_bytes = 2;                   // bytes per cached element (bf16 like the official engine)
  KvBytes kv_per_token;                 // growth per additional token (window excluded)
  KvBytes kv_at_ctx;                    // at ctx tokens, main layers
};

// elem_bytes: 2 for bf16 (the official engine), 4 for dsv4's current float32 cache.
ModelInfo model_info(const ModelConfig& c, long long ctx, int elem_bytes);
nlohmann::json info_json(const ModelInfo& i);
std::string info_text(const ModelConfig& c, const ModelInfo& bf16, const ModelInfo& f32);

}  // namespace dsv4
