// The float master weights of a model being trained, laid out per block like the checkpoint
// (and named by it: every tensor is visited under its checkpoint name), their initialization,
// and the two ways out: the released format (FP8 weights with ue8m0 128x128 scales, FP4
// routed experts with ue8m0 1x32 scales, BF16 / F32 for the rest, exactly what dsv4 and the
// official code load) and back in (a checkpoint dequantized into float masters).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/config.h"
#include "train/attention_backward.h"
#include "train/moe_backward.h"

namespace dsv4 {

struct HcF32 {
  std::vector<float> fn, base, scale;  // hc_*_fn [mix, hc * dim], hc_*_base [mix], hc_*_scale [3] (head: [1])
};

struct BlockF32 {
  int layer = 0;  // index in compress_ratios (num_hidden_layers + i for mtp.i)
  HcF32 hc_attn, hc_ffn;
  std::vector<float> attn_norm, ffn_norm;
  AttentionF32 attn;
  MoeF32 ffn;
  MoeRouting routing;  // gate.bias (not a gradient parameter: the balancing rule moves it) or tid2eid
};

struct MtpF32 {
  BlockF32 block;
  std::vector<float> e_proj, h_proj;  // [dim, dim]
  std::vector<float> enorm, hnorm, norm;
  HcF32 hc_head;
};

struct TrainWeights {
  std::vector<float> embed, head;  // [vocab, dim]
  std::vector<float> norm;
  HcF32 hc_head;
  std::vector<BlockF32> layers;
  std::vector<MtpF32> mtp;
};

// Shapes from the config; every value zero (gradient buffers) or initialized for training:
// matrices N(0, 1/in) (output projections wo_b and w2 further by 1/sqrt(2 layers)), the
// embedding N(0, 1), norms and hc scales 1, hc_fn N(0, 0.01^2), biases / ape / sinks 0, and
// hash layers' tid2eid a random balanced assignment.
TrainWeights zero_weights(const ModelConfig& c);
TrainWeights init_weights(const ModelConfig& c, uint64_t seed);

// Every gradient parameter under its checkpoint name (gate.bias and tid2eid are not visited).
void for_each_param(TrainWeights& w, const std::function<void(const std::string&, std::vector<float>&)>& f);
void for_each_param(const TrainWeights& w,
                    const std::function<void(const std::string&, const std::vector<float>&)>& f);

// Every block, main layers then MTP layers, with its checkpoint prefix ("layers.3", "mtp.0").
void for_each_block(TrainWeights& w, const std::function<void(const std::string&, BlockF32&)>& f);
void for_each_block(const TrainWeights& w, const std::function<void(const std::string&, const BlockF32&)>& f);

// DeepSeek-V4's split: Muon for 2-D hidden matrices, AdamW for the embedding, the head, and
// every vector (norms, sinks, mHC bases and scales) and the compressors' ape.
bool uses_muon(const std::string& name, const std::vector<long long>& shape);

// The checkpoint's shape of every tensor by name (logical: FP4 weights count both nibbles).
std::map<std::string, std::vector<long long>> param_shapes(const ModelConfig& c);

// DIR/model.safetensors in the official layout (dsv4's own config.json and tokenizer.json are
// the caller's). Weights quantized as the release stores them: per 128x128 block (FP8) or 1x32
// (FP4) the scale is the power of two 2^ceil(log2(amax / max)), values rounded to nearest even.
void write_released_checkpoint(const std::string& path, const ModelConfig& c, const TrainWeights& w,
                               const std::map<std::string, std::string>& metadata = {});

// The float values of a checkpoint (dequantized; the routing biases and tid2eid included).
TrainWeights read_checkpoint_weights(const std::string& dir, const ModelConfig& c);

}  // namespace dsv4
