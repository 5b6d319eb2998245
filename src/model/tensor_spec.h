// The tensors a DeepSeek-V4 checkpoint must hold, derived from ModelConfig alone: name, shape
// and the dtypes allowed for it. The loader validates against this list; `dsv4 info` counts
// parameters and bytes from it (so it works with a config.json and no weights).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"

namespace dsv4 {

enum class SpecKind {
  fp8_weight,  // F8_E4M3, logical shape = stored shape
  fp4_weight,  // I8 packed, stored shape [out, in / 2]; `shape` holds the stored shape
  scale,       // F8_E8M0 or F32
  floats,      // BF16, F16 or F32
  index,       // I32 or I64
};

struct TensorSpec {
  std::string name;
  std::vector<long long> shape;  // stored shape (this rank's part in a model-parallel layout)
  SpecKind kind;
  int layer = -1;          // block index (num_hidden_layers + i for mtp.i), -1 for globals
  bool routed_expert = false;
  bool mtp = false;
  int split_dim = -1;      // model-parallel layouts: the dimension divided among the ranks
  bool dequantized = false;  // converted layouts: wo_a, stored as BF16 without its scale

  long long numel() const;
  long long logical_params() const;  // fp4 counts two parameters per stored byte
  bool dtype_allowed(DType t) const;
  const char* dtypes_str() const;
};

// Which groups of tensors a conversion for `world` ranks divides. The official convert.py
// divides them all and refuses a world that does not divide them into whole 128-wide scale
// blocks; dsv4 keeps such a group whole on every rank instead (the forward pass sees it from
// the shapes and skips that group's collective), which only small models need.
struct Splits {
  bool vocab = false;        // embed and head rows
  bool heads = false;        // wq_b rows, attn_sink, wo_a output groups
  bool wo_b = false;         // wo_b input columns (needs heads)
  bool index_heads = false;  // the indexer's wq_b and weights_proj rows
};
Splits splits_of(const ModelConfig& c, int world);
// Rank `rank`'s routed experts [first, second): contiguous, in index order, sizes differing by
// at most one.
std::pair<int, int> expert_range(int n_experts, int rank, int world);

std::vector<TensorSpec> expected_tensors(const ModelConfig& c, const Layout& layout = {});

// Float tensors the release stores as F32 (hc_*, ape, attn_sink, gate bias); the other float
// tensors are BF16.
bool released_as_f32(const std::string& name);

// The dtype the release stores a tensor in: F8_E4M3 weights, I8-packed FP4, F8_E8M0 scales,
// I32 indices, F32 or BF16 floats (released_as_f32). dsv4's writers (synth, train) use it.
DType released_dtype(const TensorSpec& s);

// Names the checkpoint may carry that dsv4 does not use (e.g. MTP copies of embed / head).
bool ignorable_tensor(const std::string& name);

// Whether s is a matrix that activations are multiplied by, so that it costs 2 FLOPs per
// parameter per token that uses it: 2-D, not a scale or an index, not mHC's mixing parameters
// nor the compressor's position embedding (added, not multiplied), not the embedding (read by
// row).
bool multiplies_activations(const TensorSpec& s);

}  // namespace dsv4
