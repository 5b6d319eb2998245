// The conversion is driven by the expected tensor list of each rank (model/tensor_spec.h): every
// output tensor is produced from the source tensor of the same name, sliced along its split
// dimension, dequantized (wo_a) or cast (FP4 experts), so what is written is by construction
// what the loader of that rank expects; the files are then read back and validated.
#include "ckpt/convert.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/json_input.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors_writer.h"
#include "model/tensor_spec.h"
#include "model/weights.h"
#include "quant/formats.h"
#include "quant/linear.h"

namespace dsv4 {

namespace fs = std::filesystem;

namespace {

// Hugging Face names of older DeepSeek releases -> the names of SPEC.md, as convert.py renames.
std::string normalized_name(std::string n) {
  if (n.rfind("model.", 0) == 0) n = n.substr(6);
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"self_attn", "attn"},
                                 {"mlp", "ffn"},
                                 {"weight_scale_inv", "scale"},
                                 {"e_score_correction_bias", "bias"}}) {
    for (size_t at; (at = n.find(from)) != std::string::npos;) n.replace(at, from.size(), to);
  }
  return n;
}

// Rank `rank` of `world` equal parts of t along dim (dim < 0: all of it).
std::vector<uint8_t> slice(const TensorView& t, int dim, int rank, int world) {
  if (dim < 0 || world == 1) return std::vector<uint8_t>(t.data, t.data + t.nbytes);
  const size_t elem = t.nbytes / static_cast<size_t>(t.numel());
  size_t outer = 1, inner = elem;  // rows before dim, bytes after it
  for (int d = 0; d < dim; ++d) outer *= static_cast<size_t>(t.shape[d]);
  for (size_t d = dim + 1; d < t.shape.size(); ++d) inner *= static_cast<size_t>(t.shape[d]);
  const size_t part = static_cast<size_t>(t.shape[dim]) / world;
  std::vector<uint8_t> out(outer * part * inner);
  for (size_t o = 0; o < outer; ++o)
    std::memcpy(out.data() + o * part * inner,
                t.data + (o * static_cast<size_t>(t.shape[dim]) + static_cast<size_t>(rank) * part) * inner,
                part * inner);
  return out;
}

// wo_a rows [row0, row0 + rows) dequantized (Linear::dequant_row: e4m3 times its 128x128
// scale) and rounded to BF16 (exact for ue8m0 scales: a power of two times an e4m3 value).
std::vector<uint8_t> dequantize_rows(const TensorView& w, const TensorView& s, long long row0, long long rows) {
  Linear l;
  l.format = WeightFormat::fp8;
  l.out = static_cast<int>(w.shape[0]);
  l.in = static_cast<int>(w.shape[1]);
  l.weight = w.data;
  l.scale = s.data;
  l.scale_f32 = s.dtype == DType::F32;
  std::vector<uint8_t> out(static_cast<size_t>(rows * l.in) * 2);
  std::vector<float> row(l.in);
  for (long long r = 0; r < rows; ++r) {
    l.dequant_row(static_cast<int>(row0 + r), row.data());
    for (int k = 0; k < l.in; ++k) {
      const uint16_t h = f32_to_bf16(row[k]);
      std::memcpy(out.data() + 2 * (r * l.in + k), &h, 2);
    }
  }
  return out;
}

nlohmann::ordered_json read_json(const fs::path& p) {
  const std::string text = read_file(p.string());
  try {
    return parse_json<nlohmann::ordered_json>(text);
  } catch (const std::exception& e) {
    fail(p.string(), ": not valid JSON: ", e.what());
  }
}

// config.json as given (key order kept), expert_dtype updated; the tokenizer files as they are.
void write_config_and_tokenizer(const fs::path& in_dir, const fs::path& out_dir, bool cast) {
  nlohmann::ordered_json j = read_json(in_dir / "config.json");
  if (cast) j["expert_dtype"] = "fp8";
  write_file((out_dir / "config.json").string(), j.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(in_dir / f)) fs::copy_file(in_dir / f, out_dir / f, fs::copy_options::overwrite_existing);
}

}  // namespace

void cast_fp4_to_fp8(const uint8_t* weight, const uint8_t* scale, int out, int in, uint8_t* weight8,
                     uint8_t* scale8) {
  DSV4_CHECK(out % 128 == 0 && in % 128 == 0, "FP4 -> FP8 cast: shape [", out, ", ", in,
             "] is not made of 128 x 128 blocks");
  constexpr int kMaxOffsetBits = 6;  // 6 * 2^6 = 384 fits e4m3 (max 448), 6 * 2^7 does not
  const int n_scales = in / 32;
  for (int bo = 0; bo < out / 128; ++bo)
    for (int bi = 0; bi < in / 128; ++bi) {
      uint8_t smax = 0;  // ue8m0: the largest byte is the largest scale
      for (int r = bo * 128; r < bo * 128 + 128; ++r)
        for (int j = bi * 4; j < bi * 4 + 4; ++j) smax = std::max(smax, scale[static_cast<size_t>(r) * n_scales + j]);
      DSV4_CHECK(smax >= kMaxOffsetBits, "FP4 -> FP8 cast: block scale below the ue8m0 range");
      const int block = smax - kMaxOffsetBits;  // ue8m0 byte of smax / 2^6
      scale8[static_cast<size_t>(bo) * (in / 128) + bi] = static_cast<uint8_t>(block);
      for (int r = bo * 128; r < bo * 128 + 128; ++r)
        for (int k = bi * 128; k < bi * 128 + 128; ++k) {
          const uint8_t byte = weight[(static_cast<size_t>(r) * in + k) / 2];
          const float w = e2m1_to_f32(k % 2 ? byte >> 4 : byte & 15);
          // scale / block scale = 2^(s - block), at most 2^6; below 2^-127 the product rounds to 0 anyway.
          const int e = std::max(0, 127 + scale[static_cast<size_t>(r) * n_scales + k / 32] - block);
          const float offset = ue8m0_to_f32(static_cast<uint8_t>(e));
          weight8[static_cast<size_t>(r) * in + k] = encode_e4m3(round_e4m3(w * offset));
        }
    }
}

void convert_checkpoint(const ConvertOptions& o, const std::function<void(double)>& progress) {
  const int world = o.model_parallel;
  DSV4_CHECK(world >= 1, "--model-parallel must be >= 1, got ", world);
  const fs::path in_dir(o.hf_dir), out_dir(o.out_dir);
  DSV4_CHECK(!fs::exists(out_dir) || (fs::is_directory(out_dir) && fs::is_empty(out_dir)), o.out_dir,
             ": exists and is not an empty directory (a conversion writes into an empty one)");
  const ModelConfig cfg = load_config((in_dir / "config.json").string());
  const Checkpoint src(o.hf_dir, 0);  // rank 0: a conversion opens too, and is refused below
  DSV4_CHECK(!src.layout().converted, o.hf_dir, " is already a model-parallel conversion; convert the Hugging Face checkpoint");
  validate_checkpoint(src, cfg);

  const bool cast = o.expert_fp8 && cfg.expert_dtype == ExpertDtype::fp4;
  DSV4_CHECK(!cast || cfg.n_routed_experts == 0 || cfg.moe_intermediate_size % 128 == 0,
             "--expert-dtype fp8 needs expert matrices made of 128 x 128 blocks (moe_intermediate_size ",
             cfg.moe_intermediate_size, ")");
  ModelConfig out_cfg = cfg;
  if (cast) out_cfg.expert_dtype = ExpertDtype::fp8;

  std::map<std::string, const TensorView*> by_name;
  for (const auto& [name, view] : src.tensors()) by_name[normalized_name(name)] = view;
  auto source = [&](const std::string& name) -> const TensorView& {
    auto it = by_name.find(name);
    DSV4_CHECK(it != by_name.end(), o.hf_dir, ": missing tensor '", name, "'");
    return *it->second;
  };

  std::vector<std::vector<TensorSpec>> specs;
  size_t total = 0, written = 0;
  for (int r = 0; r < world; ++r) {
    specs.push_back(expected_tensors(out_cfg, {true, r, world}));
    for (const TensorSpec& s : specs.back()) total += static_cast<size_t>(s.numel());
  }
  // Identifies this conversion: ranks of a model-parallel run check that they read the same one.
  const std::string conversion_id = std::to_string(std::random_device{}()) + "-" + std::to_string(std::random_device{}());
  auto write_rank = [&](int r) {
    std::vector<TensorData> headers;
    for (const TensorSpec& s : specs[r]) {
      DType dt;
      if (s.dequantized) dt = DType::BF16;
      else if (cast && s.routed_expert) dt = s.kind == SpecKind::scale ? DType::F8_E8M0 : DType::F8_E4M3;
      else dt = source(s.name).dtype;
      headers.push_back({s.name, dt, s.shape, {}});
    }
    std::string cast_for;  // the expert matrix whose cast is in w8 / s8
    std::vector<uint8_t> w8, s8;
    const fs::path file = out_dir / ("model" + std::to_string(r) + "-mp" + std::to_string(world) + ".safetensors");
    write_safetensors_streamed(file.string(), headers, [&](size_t i, std::vector<uint8_t>& bytes) {
      const TensorSpec& s = specs[r][i];
      if (s.dequantized) {
        const std::string p = s.name.substr(0, s.name.size() - std::string(".weight").size());
        const TensorView& w = source(p + ".weight");
        bytes = dequantize_rows(w, source(p + ".scale"), s.split_dim == 0 ? r * s.shape[0] : 0, s.shape[0]);
      } else if (cast && s.routed_expert) {
        const std::string p = s.name.substr(0, s.name.rfind('.'));
        if (cast_for != p) {
          const TensorView& w = source(p + ".weight");
          const TensorView& sc = source(p + ".scale");
          DSV4_CHECK(sc.dtype == DType::F8_E8M0, sc.file, ": '", p, ".scale' is ", dtype_name(sc.dtype),
                     "; the FP4 -> FP8 cast needs ue8m0 scales");
          const int rows = static_cast<int>(w.shape[0]), cols = static_cast<int>(w.shape[1]) * 2;
          w8.assign(static_cast<size_t>(rows) * cols, 0);
          s8.assign(static_cast<size_t>(rows / 128) * (cols / 128), 0);
          cast_fp4_to_fp8(w.data, sc.data, rows, cols, w8.data(), s8.data());
          cast_for = p;
        }
        bytes = s.kind == SpecKind::scale ? s8 : w8;
      } else {
        bytes = slice(source(s.name), s.split_dim, r, world);
      }
      written += static_cast<size_t>(s.numel());
      if (progress) progress(static_cast<double>(written) / static_cast<double>(total));
    }, {{"format", "pt"}, {"dsv4_conversion", conversion_id}});
  };

  fs::create_directories(out_dir);
  try {
    for (int r = 0; r < world; ++r) write_rank(r);
    write_config_and_tokenizer(in_dir, out_dir, cast);
    // Read every rank's file back against its expected list.
    const ModelConfig written_cfg = load_config((out_dir / "config.json").string());
    for (int r = 0; r < world; ++r) validate_checkpoint(Checkpoint(o.out_dir, r), written_cfg);
  } catch (...) {
    fs::remove_all(out_dir);  // it was new or empty: nothing of the user's is lost, no half conversion left
    throw;
  }
}

}  // namespace dsv4
