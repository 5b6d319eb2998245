// config.json -> ModelConfig, with every key's presence, type and range checked.
#include "io/config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/json_input.h"
#include "core/read_file.h"

namespace dsv4 {

namespace {

using json = nlohmann::json;

const json& need(const json& j, const char* key, const std::string& where) {
  DSV4_CHECK(j.contains(key), where, ": missing key '", key, "'");
  return j[key];
}

// The largest value each size may take: far above the released models' (V4-Pro: vocabulary
// 129280, dim 7168, 61 layers, 384 experts, window 128, 20 Sinkhorn iterations), and far below
// what would exhaust memory or time before an error could name the key (a window of 2^30 rows,
// 2^30 Sinkhorn iterations per token).
long long max_of(const std::string& key) {
  static const std::map<std::string, long long> m = {
      {"vocab_size", 1 << 22}, {"hidden_size", 1 << 16}, {"moe_intermediate_size", 1 << 16},
      {"num_hidden_layers", 1024}, {"num_hash_layers", 1024}, {"num_nextn_predict_layers", 16},
      {"num_attention_heads", 4096}, {"n_routed_experts", 1 << 16}, {"n_shared_experts", 16},
      {"num_experts_per_tok", 1024}, {"q_lora_rank", 1 << 16}, {"head_dim", 4096}, {"qk_rope_head_dim", 4096},
      {"o_groups", 4096}, {"o_lora_rank", 1 << 16}, {"sliding_window", 1 << 16},
      {"original_max_position_embeddings", 1 << 24}, {"index_n_heads", 4096}, {"index_head_dim", 4096},
      {"index_topk", 1 << 20}, {"hc_mult", 64}, {"hc_sinkhorn_iters", 1000}};
  const auto it = m.find(key);
  return it == m.end() ? 1LL << 30 : it->second;
}

int get_int(const json& j, const char* key, const std::string& where, int min_value) {
  const json& v = need(j, key, where);
  // A float must be a whole number inside long long's range before it is cast (the cast of
  // 2.7e40 is undefined behaviour; fuzz_config found it).
  const bool whole_float = v.is_number_float() && std::fabs(v.get<double>()) < 9.2e18 &&
                           v.get<double>() == std::trunc(v.get<double>());
  DSV4_CHECK(v.is_number_integer() || whole_float, where, ": key '", key, "' must be an integer, got ", v.dump());
  const long long x = v.is_number_integer()   ? (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX ? INT64_MAX
                                                                                                       : v.get<long long>())
                      : static_cast<long long>(v.get<double>());
  DSV4_CHECK(x >= min_value && x <= max_of(key), where, ": key '", key, "' = ", x, " is out of range [", min_value,
             ", ", max_of(key), "]");
  return static_cast<int>(x);
}

double get_num(const json& j, const char* key, const std::string& where) {
  const json& v = need(j, key, where);
  DSV4_CHECK(v.is_number() && std::isfinite(v.get<double>()), where, ": key '", key, "' must be a finite number, got ",
             v.dump());
  return v.get<double>();
}

}  // namespace

const char* score_func_name(ScoreFunc f) {
  switch (f) {
    case ScoreFunc::softmax: return "softmax";
    case ScoreFunc::sigmoid: return "sigmoid";
    case ScoreFunc::sqrtsoftplus: return "sqrtsoftplus";
  }
  return "?";
}

// DSpark (0731): all four dspark_* keys or none. The stage count is not num_nextn_predict_layers
// (the published 0731 config still says 1 for 3 stages) but what compress_ratios holds beyond the
// target layers, as the reference's n_mtp_layers; the stages are not MTP layers, so
// num_nextn_predict_layers becomes 0.
namespace {

void read_dspark(const json& j, const std::string& where, ModelConfig& c) {
  const char* keys[] = {"dspark_block_size", "dspark_markov_rank", "dspark_noise_token_id", "dspark_target_layer_ids"};
  int present = 0;
  for (const char* k : keys) present += j.contains(k) && !j[k].is_null();
  if (present == 0) return;
  for (const char* k : keys)
    DSV4_CHECK(j.contains(k) && !j[k].is_null(), where, ": DSpark config without '", k,
               "' (a DSpark checkpoint has all four dspark_* keys)");
  DsparkConfig& d = c.dspark;
  d.block_size = get_int(j, "dspark_block_size", where, 2);
  DSV4_CHECK(d.block_size <= 64, where, ": dspark_block_size ", d.block_size, " is above 64");
  d.markov_rank = get_int(j, "dspark_markov_rank", where, 1);
  d.noise_token_id = get_int(j, "dspark_noise_token_id", where, 0);
  DSV4_CHECK(d.noise_token_id < c.vocab_size, where, ": dspark_noise_token_id ", d.noise_token_id,
             " is outside the vocabulary (", c.vocab_size, ")");
  const json& ids = j["dspark_target_layer_ids"];
  DSV4_CHECK(ids.is_array() && !ids.empty(), where, ": dspark_target_layer_ids must be a non-empty array");
  for (const json& v : ids) {
    DSV4_CHECK(v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() < c.num_hidden_layers, where,
               ": dspark_target_layer_ids entry ", v.dump(), " is not a layer (0 .. ", c.num_hidden_layers - 1, ")");
    d.target_layer_ids.push_back(v.get<int>());
  }
  std::sort(d.target_layer_ids.begin(), d.target_layer_ids.end());
  DSV4_CHECK(std::adjacent_find(d.target_layer_ids.begin(), d.target_layer_ids.end()) == d.target_layer_ids.end(),
             where, ": dspark_target_layer_ids names a layer twice: ", ids.dump());
  const int stages = static_cast<int>(c.compress_ratios.size()) - c.num_hidden_layers;
  DSV4_CHECK(stages >= 1, where, ": compress_ratios has ", c.compress_ratios.size(),
             " entries: a DSpark config needs one per target layer (", c.num_hidden_layers,
             ") and one per draft stage");
  DSV4_CHECK(stages <= 16, where, ": ", stages, " DSpark stages (compress_ratios beyond num_hidden_layers) is above 16");
  for (int s = 0; s < stages; ++s)
    DSV4_CHECK(c.compress_ratios[c.num_hidden_layers + s] == 0, where, ": DSpark stage ", s, " has compress ratio ",
               c.compress_ratios[c.num_hidden_layers + s], "; the stages attend a sliding window only (0)");
  d.stages = stages;
  c.num_nextn_predict_layers = 0;
}

}  // namespace

ModelConfig parse_config(const std::string& text, const std::string& where) {
  json j;
  try {
    j = parse_json<json>(text);
  } catch (const std::exception& e) {
    fail(where, ": not valid JSON: ", e.what());
  }
  DSV4_CHECK(j.is_object(), where, ": not a JSON object");
  ModelConfig c;
  c.vocab_size = get_int(j, "vocab_size", where, 1);
  c.hidden_size = get_int(j, "hidden_size", where, 1);
  c.moe_intermediate_size = get_int(j, "moe_intermediate_size", where, 1);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", where, 1);
  c.num_hash_layers = get_int(j, "num_hash_layers", where, 0);
  c.num_nextn_predict_layers = get_int(j, "num_nextn_predict_layers", where, 0);
  c.num_attention_heads = get_int(j, "num_attention_heads", where, 1);
  c.n_routed_experts = get_int(j, "n_routed_experts", where, 1);
  c.n_shared_experts = get_int(j, "n_shared_experts", where, 0);
  c.num_experts_per_tok = get_int(j, "num_experts_per_tok", where, 1);
  const json& sf = need(j, "scoring_func", where);
  DSV4_CHECK(sf.is_string(), where, ": key 'scoring_func' must be a string");
  const std::string s = sf.get<std::string>();
  if (s == "softmax") c.scoring_func = ScoreFunc::softmax;
  else if (s == "sigmoid") c.scoring_func = ScoreFunc::sigmoid;
  else if (s == "sqrtsoftplus") c.scoring_func = ScoreFunc::sqrtsoftplus;
  else fail(where, ": scoring_func '", s, "' is not one of softmax, sigmoid, sqrtsoftplus");
  c.routed_scaling_factor = static_cast<float>(get_num(j, "routed_scaling_factor", where));
  c.swiglu_limit = static_cast<float>(get_num(j, "swiglu_limit", where));
  c.q_lora_rank = get_int(j, "q_lora_rank", where, 1);
  c.head_dim = get_int(j, "head_dim", where, 1);
  c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", where, 2);
  c.rms_norm_eps = static_cast<float>(get_num(j, "rms_norm_eps", where));
  c.o_groups = get_int(j, "o_groups", where, 1);
  c.o_lora_rank = get_int(j, "o_lora_rank", where, 1);
  c.sliding_window = get_int(j, "sliding_window", where, 1);
  const json& cr = need(j, "compress_ratios", where);
  DSV4_CHECK(cr.is_array(), where, ": key 'compress_ratios' must be an array");
  for (const auto& v : cr) {
    DSV4_CHECK(v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() <= 1 << 16, where,
               ": compress_ratios entries must be integers in [0, 65536], got ", v.dump());
    c.compress_ratios.push_back(v.get<int>());
  }
  c.compress_rope_theta = get_num(j, "compress_rope_theta", where);
  c.rope_theta = get_num(j, "rope_theta", where);
  const json& rs = need(j, "rope_scaling", where);
  DSV4_CHECK(rs.is_object(), where, ": key 'rope_scaling' must be an object");
  const std::string rsw = where + ": rope_scaling";
  c.rope_factor = get_num(rs, "factor", rsw);
  c.original_max_position_embeddings = get_int(rs, "original_max_position_embeddings", rsw, 0);
  c.beta_fast = get_num(rs, "beta_fast", rsw);
  c.beta_slow = get_num(rs, "beta_slow", rsw);
  c.index_n_heads = get_int(j, "index_n_heads", where, 1);
  c.index_head_dim = get_int(j, "index_head_dim", where, 1);
  c.index_topk = get_int(j, "index_topk", where, 1);
  c.hc_mult = get_int(j, "hc_mult", where, 1);
  c.hc_sinkhorn_iters = get_int(j, "hc_sinkhorn_iters", where, 1);
  c.hc_eps = static_cast<float>(get_num(j, "hc_eps", where));
  if (j.contains("expert_dtype") && !j["expert_dtype"].is_null()) {
    DSV4_CHECK(j["expert_dtype"].is_string(), where, ": key 'expert_dtype' must be a string");
    const std::string e = j["expert_dtype"].get<std::string>();
    if (e == "fp4") c.expert_dtype = ExpertDtype::fp4;
    else if (e == "fp8") c.expert_dtype = ExpertDtype::fp8;
    else fail(where, ": expert_dtype '", e, "' is not fp4 or fp8");
  }
  for (auto [key, field] : {std::pair{"bos_token_id", &c.bos_token_id}, std::pair{"eos_token_id", &c.eos_token_id}})
    if (j.contains(key) && !j[key].is_null()) *field = get_int(j, key, where, 0);
  read_dspark(j, where, c);
  const json& qc = need(j, "quantization_config", where);
  DSV4_CHECK(qc.is_object(), where, ": key 'quantization_config' must be an object");
  const json& wbs = need(qc, "weight_block_size", where + ": quantization_config");
  DSV4_CHECK(wbs.is_array() && wbs.size() == 2 && wbs[0] == 128 && wbs[1] == 128, where,
             ": quantization_config.weight_block_size must be [128, 128], got ", wbs.dump());

  // Consistency: the shapes the model code relies on.
  const std::string w = where;
  if (c.dspark.stages == 0)
    DSV4_CHECK((int)c.compress_ratios.size() == c.n_layers_total(), w, ": compress_ratios has ",
               c.compress_ratios.size(), " entries, expected num_hidden_layers + num_nextn_predict_layers = ",
               c.n_layers_total());
  for (int r : c.compress_ratios)
    DSV4_CHECK(r == 0 || r >= 2, w, ": compress ratio ", r, " is not 0 or >= 2");
  DSV4_CHECK(c.qk_rope_head_dim % 2 == 0 && c.qk_rope_head_dim < c.head_dim, w,
             ": qk_rope_head_dim must be even and below head_dim");
  DSV4_CHECK((c.head_dim - c.qk_rope_head_dim) % 64 == 0, w,
             ": head_dim - qk_rope_head_dim must be a multiple of 64 (kv FP8 blocks)");
  DSV4_CHECK(c.num_attention_heads % c.o_groups == 0, w, ": num_attention_heads (",
             c.num_attention_heads, ") is not a multiple of o_groups (", c.o_groups, ")");
  DSV4_CHECK((c.index_head_dim & (c.index_head_dim - 1)) == 0 && c.index_head_dim % 32 == 0 &&
                 c.qk_rope_head_dim < c.index_head_dim,
             w, ": index_head_dim must be a power of two, >= 32 and above qk_rope_head_dim");
  DSV4_CHECK(c.num_experts_per_tok <= c.n_routed_experts, w,
             ": num_experts_per_tok exceeds n_routed_experts");
  DSV4_CHECK(c.n_shared_experts <= 1, w, ": n_shared_experts > 1 is not part of DeepSeek-V4");
  DSV4_CHECK(c.num_hash_layers <= c.num_hidden_layers, w, ": num_hash_layers (", c.num_hash_layers,
             ") exceeds num_hidden_layers (", c.num_hidden_layers, ")");
  for (auto [key, id] : {std::pair{"bos_token_id", c.bos_token_id}, std::pair{"eos_token_id", c.eos_token_id}})
    DSV4_CHECK(id < c.vocab_size, w, ": ", key, " ", id, " is outside the vocabulary (", c.vocab_size, ")");
  for (int d : {c.hidden_size, c.q_lora_rank, c.moe_intermediate_size,
                c.o_groups * c.o_lora_rank, c.head_dim})
    DSV4_CHECK(d % 128 == 0, w, ": every linear input width must be a multiple of 128 (FP8 "
               "activation blocks); got ", d);
  return c;
}

ModelConfig load_config(const std::string& path) { return parse_config(read_file(path), path); }

}  // namespace dsv4
