// Synthetic checkpoints: every tensor of expected_tensors(config) with random values of a
// sensible scale (matrices ~ N(0, 1/in), quantized per block exactly as the release stores them).
#include "ckpt/synth.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/write_file.h"
#include "io/safetensors_writer.h"
#include "model/tensor_spec.h"
#include "quant/formats.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

struct Shape {
  int vocab, dim, layers;
  std::vector<int> ratios;  // layers + 1 (MTP)
  int heads, experts, topk, inter, window, index_topk;
  int q_lora = 128, head_dim = 128, o_groups = 2, o_lora = 128, index_heads = 4;
  // DSpark (the V4-Flash-0731 layout): this many stages reading the last three layers, in place
  // of the MTP layer (whose compress_ratios entry they replace; num_nextn_predict_layers stays
  // 1, as in the 0731 config).
  int dspark_stages = 0;
};

std::string config_for(const Shape& s) {
  nlohmann::ordered_json c = {
      {"architectures", {"DeepseekV4ForCausalLM"}}, {"model_type", "deepseek_v4"},
      {"vocab_size", s.vocab}, {"hidden_size", s.dim}, {"moe_intermediate_size", s.inter},
      {"num_hidden_layers", s.layers}, {"num_hash_layers", 1}, {"num_nextn_predict_layers", 1},
      {"num_attention_heads", s.heads}, {"n_routed_experts", s.experts}, {"n_shared_experts", 1},
      {"num_experts_per_tok", s.topk}, {"scoring_func", "sqrtsoftplus"}, {"routed_scaling_factor", 1.5},
      {"swiglu_limit", 10.0}, {"q_lora_rank", s.q_lora}, {"head_dim", s.head_dim}, {"qk_rope_head_dim", 64},
      {"rms_norm_eps", 1e-6}, {"o_groups", s.o_groups}, {"o_lora_rank", s.o_lora}, {"sliding_window", s.window},
      {"compress_ratios", s.ratios}, {"compress_rope_theta", 160000.0}, {"rope_theta", 10000.0},
      {"rope_scaling", {{"type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 1024},
                        {"beta_fast", 32}, {"beta_slow", 1}}},
      {"index_n_heads", s.index_heads}, {"index_head_dim", 128}, {"index_topk", s.index_topk}, {"hc_mult", 4},
      {"hc_sinkhorn_iters", 20}, {"hc_eps", 1e-6}, {"expert_dtype", "fp4"},
      {"bos_token_id", 0}, {"eos_token_id", 1}, {"max_position_embeddings", 65536},
      {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"},
      {"quantization_config", {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                               {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}}}};
  if (s.dspark_stages) {
    std::vector<int> ratios(s.ratios.begin(), s.ratios.begin() + s.layers);
    ratios.insert(ratios.end(), s.dspark_stages, 0);
    c["compress_ratios"] = ratios;
    c["dspark_block_size"] = 5;
    c["dspark_markov_rank"] = 64;
    c["dspark_noise_token_id"] = s.vocab - 1;
    c["dspark_target_layer_ids"] = {s.layers - 3, s.layers - 2, s.layers - 1};
  }
  return c.dump(2);
}

// splitmix64: fast enough to fill gigabytes; the values only need a sensible spread.
class Filler {
 public:
  explicit Filler(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  int uniform(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  // Roughly N(0, sigma): the sum of four uniforms (Irwin-Hall), centred and scaled.
  float normal(float sigma) {
    const uint64_t r = next();
    float s = 0;
    for (int k = 0; k < 4; ++k) s += static_cast<float>((r >> (16 * k)) & 0xFFFF) / 65535.0f;
    return (s - 2.0f) * 1.7320508f * sigma;
  }
  std::vector<float> normal(size_t n, float sigma) {
    std::vector<float> v(n);
    for (float& x : v) x = normal(sigma);
    return v;
  }

 private:
  uint64_t state_;
};

uint8_t ue8m0_of(int exponent) { return static_cast<uint8_t>(exponent + 127); }

// e4m3 codes with exponents 4..8 (|v| in [1/8, 3.75]) and random sign and mantissa; with a
// block scale of 2^-(round(log2 sqrt(in)) + 1) the weights spread like N(0, 1/in).
void random_fp8(Filler& f, long long out, long long in, std::vector<uint8_t>& w, std::vector<uint8_t>& s) {
  w.resize(static_cast<size_t>(out * in));
  for (size_t i = 0; i < w.size(); i += 8) {
    uint64_t r = f.next();
    for (size_t k = i; k < std::min(w.size(), i + 8); ++k, r >>= 8) {
      const uint8_t b = static_cast<uint8_t>(r);
      w[k] = static_cast<uint8_t>((b & 0x87) | ((4 + (b >> 3) % 5) << 3));
    }
  }
  const int e = -static_cast<int>(std::lround(0.5 * std::log2(static_cast<double>(in)))) - 1;
  s.assign(static_cast<size_t>(((out + 127) / 128) * ((in + 127) / 128)), ue8m0_of(e));
}

// Random e2m1 nibbles (|v| <= 6) with a per-32 scale of 2^-(round(log2 sqrt(in)) + 2).
void random_fp4(Filler& f, long long out, long long in, std::vector<uint8_t>& w, std::vector<uint8_t>& s) {
  w.resize(static_cast<size_t>(out * in / 2));
  for (size_t i = 0; i < w.size(); i += 8) {
    uint64_t r = f.next();
    std::memcpy(w.data() + i, &r, std::min<size_t>(8, w.size() - i));
  }
  const int e = -static_cast<int>(std::lround(0.5 * std::log2(static_cast<double>(in)))) - 2;
  s.assign(static_cast<size_t>(out * (in / 32)), ue8m0_of(e));
}

}  // namespace

const std::vector<SynthPreset>& synth_presets() {
  const int vocab = static_cast<int>(v4_special_tokens().size()) + 256;
  // The vocabulary padded to a multiple of 128 (as the releases pad theirs), so that the
  // checkpoint also converts for 2 or 4 model-parallel ranks.
  Shape flash{(vocab + 127) / 128 * 128, 4096, 6, {4, 128, 4, 128, 4, 128, 0}, 64, 32, 6, 2048, 128, 512};
  flash.q_lora = 1024, flash.head_dim = 512, flash.o_groups = 8, flash.o_lora = 1024, flash.index_heads = 64;
  // Every split dimension of the model-parallel layout divisible by 4 (the vocabulary padded
  // past the tokenizer's, as the releases pad theirs; 4 output groups so that wo_b's input
  // spans four 128-blocks).
  Shape tiny_mp{(vocab + 127) / 128 * 128, 128, 4, {0, 4, 16, 4, 0}, 4, 8, 2, 128, 16, 8};
  tiny_mp.o_groups = 4;
  Shape tiny_dspark{vocab, 128, 4, {0, 4, 16, 4, 0}, 4, 8, 2, 128, 16, 8};
  tiny_dspark.dspark_stages = 3;
  Shape tiny_dspark_mp = tiny_mp;
  tiny_dspark_mp.dspark_stages = 3;
  Shape flash_dspark = flash;
  flash_dspark.dspark_stages = 3;
  static const std::vector<SynthPreset> p = {
      {"tiny", "4 layers (SWA, CSA, HCA, CSA) + MTP, dim 128, 8 FP4 experts: runs anywhere in a blink",
       config_for({vocab, 128, 4, {0, 4, 16, 4, 0}, 4, 8, 2, 128, 16, 8})},
      {"tiny-mp", "tiny with every model-parallel split divisible by 4 (vocabulary padded, 4 output groups): "
                  "for dsv4 convert --model-parallel 2 / 4",
       config_for(tiny_mp)},
      {"small", "8 layers, dim 512, 16 FP4 experts (top 4): about 80 MB, for CLI and server load",
       config_for({vocab, 512, 8, {0, 0, 4, 128, 4, 128, 4, 128, 0}, 8, 16, 4, 512, 128, 64})},
      {"flash-6l", "V4-Flash shapes (dim 4096, 64 heads x 512, q_lora 1024, 8 output groups, FP4 experts of "
                   "2048, top 6, 64 index heads) with 6 layers (CSA / HCA) and 32 experts: about 3.5 GB, "
                   "for memory-bandwidth benchmarks",
       config_for(flash)},
      {"tiny-dspark", "tiny with a DSpark drafter (3 stages, blocks of 5) in place of MTP, as V4-Flash-0731",
       config_for(tiny_dspark)},
      {"tiny-dspark-mp", "tiny-mp with a DSpark drafter in place of MTP: for speculative decoding under mpirun",
       config_for(tiny_dspark_mp)},
      {"flash-6l-dspark", "flash-6l with a DSpark drafter (3 stages, blocks of 5) in place of MTP, as V4-Flash-0731",
       config_for(flash_dspark)},
  };
  return p;
}

const SynthPreset& synth_preset(const std::string& name) {
  std::string names;
  for (const auto& p : synth_presets()) {
    if (p.name == name) return p;
    names += " " + p.name;
  }
  fail("unknown preset '", name, "' (presets:", names, ")");
}

void write_synthetic_checkpoint(const std::string& dir, const SynthPreset& preset, uint64_t seed,
                                const std::function<void(double)>& progress) {
  namespace fs = std::filesystem;
  const ModelConfig cfg = parse_config(preset.config_json, "preset " + preset.name);
  fs::create_directories(dir);
  const std::vector<TensorSpec> specs = expected_tensors(cfg);
  std::vector<TensorData> meta;
  long long total = 0;
  for (const TensorSpec& s : specs) {
    meta.push_back({s.name, released_dtype(s), s.shape, {}});
    total += s.numel();
  }
  Filler fill(seed);
  std::vector<uint8_t> pending_scale;  // a weight's scale, generated with it, written next
  long long done = 0;
  auto generate = [&](size_t i, std::vector<uint8_t>& bytes) {
    const TensorSpec& s = specs[i];
    done += s.numel();
    if (progress) progress(static_cast<double>(done) / static_cast<double>(total));
    switch (s.kind) {
      case SpecKind::fp8_weight:
        random_fp8(fill, s.shape[0], s.shape[1], bytes, pending_scale);
        return;
      case SpecKind::fp4_weight:
        random_fp4(fill, s.shape[0], s.shape[1] * 2, bytes, pending_scale);
        return;
      case SpecKind::scale:
        bytes = std::move(pending_scale);
        return;
      case SpecKind::index: {  // tid2eid: distinct experts per token
        std::vector<int32_t> v(static_cast<size_t>(s.numel()));
        const int k = static_cast<int>(s.shape[1]);
        for (long long t = 0; t < s.shape[0]; ++t) {
          const int first = fill.uniform(cfg.n_routed_experts);
          for (int j = 0; j < k; ++j) v[t * k + j] = (first + j) % cfg.n_routed_experts;
        }
        bytes = as_bytes(v);
        return;
      }
      case SpecKind::floats: break;
    }
    // Float tensors: norms and hc scales 1, hc bases / ape / sink / bias 0, hc_fn small,
    // matrices ~ N(0, 1/in), the embedding ~ N(0, 1).
    std::vector<float> v;
    const size_t n = static_cast<size_t>(s.numel());
    if (s.name.ends_with("norm.weight") || s.name.ends_with("_scale")) v.assign(n, 1.0f);
    else if (s.name.ends_with("_base") || s.name.ends_with(".ape") || s.name.ends_with("attn_sink") ||
             s.name.ends_with("gate.bias")) v.assign(n, 0.0f);
    else if (s.name.ends_with("_fn")) v = fill.normal(n, 0.01f);
    else if (s.name == "embed.weight") v = fill.normal(n, 1.0f);
    else v = fill.normal(n, 1.0f / std::sqrt(static_cast<float>(s.shape.back())));
    if (meta[i].dtype == DType::F32) {
      bytes = as_bytes(v);
    } else {
      std::vector<uint16_t> b(n);
      for (size_t k = 0; k < n; ++k) b[k] = f32_to_bf16(v[k]);
      bytes = as_bytes(b);
    }
  };
  const std::vector<fs::path> files = {fs::path(dir) / "model.safetensors", fs::path(dir) / "config.json",
                                       fs::path(dir) / "tokenizer.json"};
  try {
    // dsv4_origin: read by `dsv4 chat` and `serve` to say what the model is (noise, here).
    write_safetensors_streamed(files[0].string(), meta, generate,
                               {{"format", "pt"}, {"dsv4_origin", "random weights (dsv4 synth --preset " + preset.name +
                                                                     " --seed " + std::to_string(seed) + ")"}});
    write_file(files[1].string(), preset.config_json + "\n");
    write_file(files[2].string(), byte_level_tokenizer_json() + "\n");
  } catch (...) {
    // A cut checkpoint would fail later, far from the cause: leave none of it behind.
    std::error_code ec;
    for (const fs::path& f : files) fs::remove(f, ec);
    throw;
  }
  if (progress) progress(1.0);
}

}  // namespace dsv4
