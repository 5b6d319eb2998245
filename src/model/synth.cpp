// Synthetic checkpoints: every tensor of expected_tensors(config) with random values of a
// sensible scale (matrices ~ N(0, 1/in), quantized per block exactly as the release stores them).
#include "model/synth.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"
#include "io/safetensors_writer.h"
#include "model/tensor_spec.h"
#include "quant/formats.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

std::string config_for(int vocab, int dim, int layers, std::vector<int> ratios, int heads, int experts,
                       int topk, int inter, int window, int index_topk, const char* expert_dtype) {
  nlohmann::ordered_json c = {
      {"architectures", {"DeepseekV4ForCausalLM"}}, {"model_type", "deepseek_v4"},
      {"vocab_size", vocab}, {"hidden_size", dim}, {"moe_intermediate_size", inter},
      {"num_hidden_layers", layers}, {"num_hash_layers", 1}, {"num_nextn_predict_layers", 1},
      {"num_attention_heads", heads}, {"n_routed_experts", experts}, {"n_shared_experts", 1},
      {"num_experts_per_tok", topk}, {"scoring_func", "sqrtsoftplus"}, {"routed_scaling_factor", 1.5},
      {"swiglu_limit", 10.0}, {"q_lora_rank", 128}, {"head_dim", 128}, {"qk_rope_head_dim", 64},
      {"rms_norm_eps", 1e-6}, {"o_groups", 2}, {"o_lora_rank", 128}, {"sliding_window", window},
      {"compress_ratios", ratios}, {"compress_rope_theta", 160000.0}, {"rope_theta", 10000.0},
      {"rope_scaling", {{"type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 1024},
                        {"beta_fast", 32}, {"beta_slow", 1}}},
      {"index_n_heads", 4}, {"index_head_dim", 128}, {"index_topk", index_topk}, {"hc_mult", 4},
      {"hc_sinkhorn_iters", 20}, {"hc_eps", 1e-6}, {"expert_dtype", expert_dtype},
      {"bos_token_id", 0}, {"eos_token_id", 1}, {"max_position_embeddings", 65536},
      {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"},
      {"quantization_config", {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                               {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}}}};
  return c.dump(2);
}

uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t b = f32_to_bits(f);
  b += 0x7FFF + ((b >> 16) & 1);
  return static_cast<uint16_t>(b >> 16);
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

class Filler {
 public:
  explicit Filler(uint64_t seed) : rng_(seed) {}

  std::vector<float> normal(size_t n, float sigma) {
    std::normal_distribution<float> nd(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng_);
    return v;
  }
  int uniform(int n) { return static_cast<int>(rng_() % n); }

 private:
  std::mt19937_64 rng_;
};

// FP8 e4m3 with one ue8m0 scale per 128x128 block.
void quantize_fp8(const std::vector<float>& w, long long out, long long in, TensorData& wt, TensorData& st) {
  const long long bo = (out + 127) / 128, bi = (in + 127) / 128;
  wt.bytes.resize(out * in);
  st.bytes.resize(bo * bi);
  for (long long r = 0; r < bo; ++r)
    for (long long c = 0; c < bi; ++c) {
      float amax = 0;
      for (long long i = r * 128; i < std::min(out, r * 128 + 128); ++i)
        for (long long k = c * 128; k < std::min(in, c * 128 + 128); ++k) amax = std::max(amax, std::fabs(w[i * in + k]));
      const float s = pow2_ceil(std::max(amax, 1e-30f) / 448.0f);
      st.bytes[r * bi + c] = static_cast<uint8_t>((f32_to_bits(s) >> 23) & 0xFF);
      for (long long i = r * 128; i < std::min(out, r * 128 + 128); ++i)
        for (long long k = c * 128; k < std::min(in, c * 128 + 128); ++k)
          wt.bytes[i * in + k] = encode_e4m3(round_e4m3(std::clamp(w[i * in + k] / s, -448.0f, 448.0f)));
    }
}

// FP4 e2m1, two per byte (low nibble = even index), one ue8m0 scale per 1x32.
void quantize_fp4(const std::vector<float>& w, long long out, long long in, TensorData& wt, TensorData& st) {
  wt.bytes.assign(out * in / 2, 0);
  st.bytes.resize(out * (in / 32));
  for (long long i = 0; i < out; ++i)
    for (long long b = 0; b < in / 32; ++b) {
      float amax = 0;
      for (long long k = b * 32; k < b * 32 + 32; ++k) amax = std::max(amax, std::fabs(w[i * in + k]));
      const float s = pow2_ceil(std::max(amax, 1e-30f) / 6.0f);
      st.bytes[i * (in / 32) + b] = static_cast<uint8_t>((f32_to_bits(s) >> 23) & 0xFF);
      for (long long k = b * 32; k < b * 32 + 32; ++k) {
        const uint8_t q = encode_e2m1(round_e2m1(std::clamp(w[i * in + k] / s, -6.0f, 6.0f)));
        wt.bytes[(i * in + k) / 2] |= static_cast<uint8_t>(k % 2 ? q << 4 : q);
      }
    }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const std::vector<std::string>& v4_special_tokens() {
  static const std::vector<std::string> t = {
      "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
      "<｜latest_reminder｜>", "<think>", "</think>", "｜DSML｜", "<｜action｜>", "<｜query｜>",
      "<｜authority｜>", "<｜domain｜>", "<｜title｜>", "<｜read_url｜>"};
  return t;
}

std::string byte_level_tokenizer_json() {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  const auto& specials = v4_special_tokens();
  for (size_t i = 0; i < specials.size(); ++i) {
    vocab[specials[i]] = i;
    added.push_back({{"id", i}, {"content", specials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    std::string ch;
    utf8_append(ch, printable ? b : next++);
    vocab[ch] = specials.size() + b;
  }
  // The same pre-tokenizer as DeepSeek's tokenizer.json.
  const nlohmann::ordered_json split = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "Split"}, {"pattern", {{"Regex", "[一-龥぀-ゟ゠-ヿ]+"}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "Split"},
         {"pattern", {{"Regex", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  nlohmann::ordered_json t = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", nlohmann::ordered_json::array()}}},
      {"pre_tokenizer", split}, {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
                 {"vocab", vocab}, {"merges", nlohmann::ordered_json::array()}}}};
  return t.dump(1);
}

const std::vector<SynthPreset>& synth_presets() {
  const int vocab = static_cast<int>(v4_special_tokens().size()) + 256;
  static const std::vector<SynthPreset> p = {
      {"tiny", "4 layers (SWA, CSA, HCA, CSA) + MTP, dim 128, 8 FP4 experts: runs anywhere in a blink",
       config_for(vocab, 128, 4, {0, 4, 16, 4, 0}, 4, 8, 2, 128, 16, 8, "fp4")},
      {"small", "8 layers, dim 512, 16 FP4 experts (top 4): a few hundred MB, for CLI and server load",
       config_for(vocab, 512, 8, {0, 0, 4, 128, 4, 128, 4, 128, 0}, 8, 16, 4, 512, 128, 64, "fp4")},
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
  Filler fill(seed);
  std::vector<TensorData> out;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    if (progress) progress(static_cast<double>(i) / specs.size());
    if (s.kind == SpecKind::scale) continue;  // written with its weight
    if (s.kind == SpecKind::fp8_weight || s.kind == SpecKind::fp4_weight) {
      const bool fp4 = s.kind == SpecKind::fp4_weight;
      const long long o = s.shape[0], in = fp4 ? s.shape[1] * 2 : s.shape[1];
      const std::vector<float> w = fill.normal(static_cast<size_t>(o * in), 1.0f / std::sqrt(static_cast<float>(in)));
      const std::string base = s.name.substr(0, s.name.size() - std::string(".weight").size());
      TensorData wt{s.name, fp4 ? DType::I8 : DType::F8_E4M3, s.shape, {}};
      TensorData st{base + ".scale", DType::F8_E8M0, specs[i + 1].shape, {}};
      (fp4 ? quantize_fp4 : quantize_fp8)(w, o, in, wt, st);
      out.push_back(std::move(wt));
      out.push_back(std::move(st));
      continue;
    }
    if (s.kind == SpecKind::index) {  // tid2eid: distinct experts per token
      std::vector<int32_t> v(static_cast<size_t>(s.numel()));
      const int k = static_cast<int>(s.shape[1]);
      for (long long t = 0; t < s.shape[0]; ++t)
        for (int j = 0; j < k; ++j) v[t * k + j] = (fill.uniform(cfg.n_routed_experts) + j) % cfg.n_routed_experts;
      out.push_back({s.name, DType::I32, s.shape, as_bytes(v)});
      continue;
    }
    // Float tensors: norms 1, hc / ape / sink / bias small, matrices ~ N(0, 1/in).
    std::vector<float> v;
    const size_t n = static_cast<size_t>(s.numel());
    if (ends_with(s.name, "norm.weight")) v.assign(n, 1.0f);
    else if (ends_with(s.name, "_scale")) v.assign(n, 1.0f);
    else if (ends_with(s.name, "_base") || ends_with(s.name, ".ape") || ends_with(s.name, "attn_sink") ||
             ends_with(s.name, "gate.bias")) v.assign(n, 0.0f);
    else if (ends_with(s.name, "_fn")) v = fill.normal(n, 0.01f);
    else if (s.name == "embed.weight") v = fill.normal(n, 1.0f);
    else v = fill.normal(n, 1.0f / std::sqrt(static_cast<float>(s.shape.back())));
    const bool f32 = s.name.find("hc_") != std::string::npos || ends_with(s.name, ".ape") ||
                     ends_with(s.name, "attn_sink") || ends_with(s.name, "gate.bias");
    if (f32) {
      out.push_back({s.name, DType::F32, s.shape, as_bytes(v)});
    } else {
      std::vector<uint16_t> b(n);
      for (size_t k = 0; k < n; ++k) b[k] = to_bf16(v[k]);
      out.push_back({s.name, DType::BF16, s.shape, as_bytes(b)});
    }
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  std::ofstream((fs::path(dir) / "config.json").string()) << preset.config_json << "\n";
  std::ofstream((fs::path(dir) / "tokenizer.json").string()) << byte_level_tokenizer_json() << "\n";
  if (progress) progress(1.0);
}

}  // namespace dsv4
