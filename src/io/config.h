// ModelConfig: the one description of a model, read from a Hugging Face config.json using the
// checkpoint's own key names. Every field is required unless marked optional; a missing or
// ill-typed key is an Error naming it. Nothing is ever inferred from tensor shapes.
#pragma once

#include <string>
#include <vector>

namespace dsv4 {

enum class ScoreFunc { softmax, sigmoid, sqrtsoftplus };
enum class ExpertDtype { fp4, fp8 };

// The DSpark drafter of V4-Flash-0731 and its -DSpark variant (config keys dspark_*): `stages`
// draft blocks under mtp.0 .. mtp.{stages - 1} (sliding window only, one compress_ratios entry
// each), which read the hidden states of the target layers target_layer_ids, draft block_size
// rows at a time from the anchor and block_size - 1 noise tokens, with a Markov bias of rank
// markov_rank. Absent from the config: stages == 0.
struct DsparkConfig {
  int stages = 0;
  int block_size = 0;
  int markov_rank = 0;
  int noise_token_id = 0;
  std::vector<int> target_layer_ids;  // ascending: the order the reference concatenates them in
};

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;             // dim
  int moe_intermediate_size = 0;   // moe_inter_dim
  int num_hidden_layers = 0;
  int num_hash_layers = 0;
  int num_nextn_predict_layers = 0;  // MTP layers; 0 with DSpark (whose config still says 1)
  int num_attention_heads = 0;
  int n_routed_experts = 0;
  int n_shared_experts = 0;
  int num_experts_per_tok = 0;
  ScoreFunc scoring_func = ScoreFunc::sqrtsoftplus;
  float routed_scaling_factor = 1;
  float swiglu_limit = 0;          // 0 = no clamp
  int q_lora_rank = 0;
  int head_dim = 0;
  int qk_rope_head_dim = 0;
  float rms_norm_eps = 1e-6f;
  int o_groups = 0;
  int o_lora_rank = 0;
  int sliding_window = 0;
  std::vector<int> compress_ratios;  // one per layer of n_layers_total()
  double compress_rope_theta = 0;
  double rope_theta = 0;
  // rope_scaling (YaRN), used by layers with compress ratio > 0
  double rope_factor = 1;
  int original_max_position_embeddings = 0;
  double beta_fast = 32, beta_slow = 1;
  int index_n_heads = 0;
  int index_head_dim = 0;
  int index_topk = 0;
  int hc_mult = 0;
  int hc_sinkhorn_iters = 0;
  float hc_eps = 1e-6f;
  ExpertDtype expert_dtype = ExpertDtype::fp8;  // optional key: "fp4", absent/null = fp8 (Base)
  int weight_block_size = 128;                  // quantization_config.weight_block_size
  int bos_token_id = -1, eos_token_id = -1;     // optional keys; -1 = absent
  DsparkConfig dspark;                          // optional keys dspark_*

  int compress_ratio(int layer) const { return compress_ratios.at(layer); }
  // Target layers, then the MTP layers or the DSpark stages.
  int n_layers_total() const { return num_hidden_layers + num_nextn_predict_layers + dspark.stages; }
};

ModelConfig load_config(const std::string& path);           // config.json file
ModelConfig parse_config(const std::string& json_text, const std::string& where);

const char* score_func_name(ScoreFunc f);

}  // namespace dsv4
