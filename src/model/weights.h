// The loaded model: typed views of every checkpoint tensor, validated against ModelConfig.
// Matrices stay in the memory-mapped checkpoint (Linear views); small vectors (norms, hc
// parameters, biases, ape) are copied to float32.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/config.h"
#include "quant/linear.h"

namespace dsv4 {

struct CompressorWeights {
  int ratio = 0, head_dim = 0;
  bool overlap = false;       // ratio 4: blocks overlap, 2 * head_dim wide projections
  std::vector<float> ape;     // [ratio, coff * head_dim]
  Linear wkv, wgate;          // [coff * head_dim, dim], float weights
  std::vector<float> norm;    // [head_dim]
};

struct IndexerWeights {
  Linear wq_b;                // fp8 [index_n_heads * index_head_dim, q_lora_rank]
  Linear weights_proj;        // float [index_n_heads, dim]
  CompressorWeights compressor;
};

struct AttentionWeights {
  std::vector<float> attn_sink;  // [n_heads]
  Linear wq_a;                   // [q_lora_rank, dim]
  std::vector<float> q_norm;     // [q_lora_rank]
  Linear wq_b;                   // [n_heads * head_dim, q_lora_rank]
  Linear wkv;                    // [head_dim, dim]
  std::vector<float> kv_norm;    // [head_dim]
  Linear wo_a;                   // [o_groups * o_lora_rank, n_heads * head_dim / o_groups]
  Linear wo_b;                   // [dim, o_groups * o_lora_rank]
  std::optional<CompressorWeights> compressor;
  std::optional<IndexerWeights> indexer;
};

struct ExpertWeights {
  Linear w1, w2, w3;  // w1, w3: [inter, dim]; w2: [dim, inter]
};

struct MoeWeights {
  Linear gate;                    // float [n_routed_experts, dim]
  std::vector<float> bias;        // [n_routed_experts], score-routed layers
  std::vector<int> tid2eid;       // [vocab, n_activated], hash-routed layers
  std::vector<ExpertWeights> experts;  // this rank's: global indices expert_begin, expert_begin + 1, ..
  int expert_begin = 0;
  std::optional<ExpertWeights> shared;
};

struct HcParams {
  // fn_blocks: hc_*_fn [mix, hc * dim] as blocks of kHcMixBlock rows, each stored column by
  // column ([mix / kHcMixBlock][hc * dim][kHcMixBlock], rows padded with zeros): hc_mixes
  // computes a block's dot products side by side. base [mix], scale [3] (head: [1]).
  static constexpr int kHcMixBlock = 4;
  std::vector<float> fn_blocks, base, scale;
  // From hc_*_fn as stored [mix, hc * dim], base [mix] and scale.
  static HcParams from(const std::vector<float>& fn, std::vector<float> base, std::vector<float> scale);
};

struct BlockWeights {
  int layer = 0;
  int compress_ratio = 0;
  bool hash = false;
  HcParams hc_attn, hc_ffn;
  std::vector<float> attn_norm, ffn_norm;
  AttentionWeights attn;
  MoeWeights ffn;
};

struct MtpWeights {
  BlockWeights block;
  Linear e_proj, h_proj;  // [dim, dim]
  std::vector<float> enorm, hnorm, norm;
  HcParams hc_head;
};

// The DSpark drafter (0731): stages[s] is mtp.s's block; main_proj / main_norm (stage 0's)
// turn the captured target states into each stage's context; the rest is the last stage's.
struct DsparkWeights {
  std::vector<BlockWeights> stages;
  Linear main_proj;  // [dim, dim * target layers]
  std::vector<float> main_norm, norm;
  HcParams hc_head;
  std::vector<float> markov_w1, markov_w2;  // [vocab, markov_rank] each
  std::vector<float> confidence;            // [dim + markov_rank]
};

struct ModelWeights {
  Linear embed, head;  // float [vocab, dim]
  std::vector<float> norm;
  HcParams hc_head;
  std::vector<BlockWeights> layers;
  std::vector<MtpWeights> mtp;
  DsparkWeights dspark;  // no stages without the dspark_* config keys
  std::deque<std::vector<uint8_t>> owned;  // converted copies (F16 matrices)
};

// Validates every tensor (presence, shape, dtype, tid2eid range) and builds the views.
// Throws Error naming the tensor and both shapes on a mismatch.
// Every expected tensor of the checkpoint's layout present with its shape and an allowed dtype,
// and free of NaN and infinity unless DSV4_ALLOW_NON_FINITE=1 (Error naming the first that is
// not); unknown tensors are reported on stderr.
void validate_checkpoint(const Checkpoint& ckpt, const ModelConfig& cfg);
// Error naming the first tensor that holds a NaN or infinity (its element index and file).
void check_finite(const Checkpoint& ckpt, const std::vector<const TensorView*>& tensors);

std::unique_ptr<ModelWeights> load_weights(const Checkpoint& ckpt, const ModelConfig& cfg);

}  // namespace dsv4
