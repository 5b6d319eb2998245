// Per-session state of one attention layer: the sliding-window ring of kv vectors, and for
// compressed layers the compressed entries and the compressor's pending rows (plus the same
// for the indexer's own compressor).
//
// Storage. With the activation rounding on (ModelOptions::act_quant, the production mode) the
// rows the model keeps are on block-scaled grids (SPEC "Quantization"): the first
// head_dim - rope_dim dims of every kv vector and compressed entry are FP8 e4m3 values times a
// power-of-two scale per 64, every indexer key is FP4 e2m1 times a power-of-two scale per 32.
// So they are stored packed (quant/block_pack.h) and unpacked bit for bit; the rope dims,
// which the model does not round, stay float32 (bf16 would be lossy). With the rounding off
// (the --no-act-quant validation mode) rows are not on a grid and are stored as float32.
// The compressor's pending rows (before pooling) are float32 in both modes.
// Everything here is a plain value: sessions and caches copy (Session mtp = s;).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dsv4 {

enum class KvFormat {
  f32,       // float32 rows: act_quant off, values on no grid
  fp8_nope,  // dims [0, dim - rope_dim): e4m3 + one ue8m0 per 64; the last rope_dim dims float32
  fp4,       // every dim e2m1, two per byte (low nibble = even index), + one ue8m0 per 32
};

// Rows [n, dim] of one format. store() packs a row (throws Error if it is not on the format's
// grid); load() unpacks it to the same floats.
class KvRows {
 public:
  static constexpr int kFp8Block = 64, kFp4Block = 32;

  KvRows() = default;
  KvRows(KvFormat format, int dim, int rope_dim);  // checks the block divisibility

  KvFormat format() const { return format_; }
  int dim() const { return dim_; }
  int rope_dim() const { return rope_dim_; }
  size_t size() const { return n_; }
  void resize(size_t n);  // new rows unpack to zeros
  void push_back(std::span<const float> row);
  void store(size_t i, std::span<const float> row);
  void load(size_t i, float* row) const;  // row [dim]
  // Row i becomes src's row j, as stored (no unpacking and packing again); the same layout.
  void copy_row(size_t i, const KvRows& src, size_t j);
  size_t bytes() const;                   // held: row_bytes() * size()

  // Bytes per stored row.
  static double row_bytes(KvFormat format, int dim, int rope_dim);

  // The stored bytes as they are ([n, codes], [n, scales], [n, floats]), for saving a session
  // (runtime/snapshot_file.h), and rows given as such bytes (sizes checked against the layout:
  // throws Error).
  std::span<const uint8_t> stored_codes() const { return codes_; }
  std::span<const uint8_t> stored_scales() const { return scales_; }
  std::span<const float> stored_floats() const { return floats_; }
  void assign_stored(size_t n, std::span<const uint8_t> codes, std::span<const uint8_t> scales,
                     std::span<const float> floats);

 private:
  KvFormat format_ = KvFormat::f32;
  int dim_ = 0, rope_dim_ = 0;
  int n_codes_ = 0, n_scales_ = 0, n_floats_ = 0;  // per row
  size_t n_ = 0;
  std::vector<uint8_t> codes_;   // [n, n_codes]  e4m3 bytes or packed e2m1
  std::vector<uint8_t> scales_;  // [n, n_scales] ue8m0
  std::vector<float> floats_;    // [n, n_floats] rope dims (fp8_nope) or the whole row (f32)
};

// Rows waiting to be compressed. With overlap (ratio 4) rows [0, ratio) hold the previous
// block and rows [ratio, 2 * ratio) the current one, each 2 * head_dim wide; without, rows
// [0, ratio) hold the current block. Scores start at -inf: a missing previous block has no
// weight in the softmax.
struct CompressorState {
  std::vector<float> kv, score;  // [coff * ratio, coff * head_dim], float32
  KvRows entries;                // [n_entries, head_dim] compressed kv, oldest first
  // While a speculative step is marked (model/rollback.cpp): every absorbed input row ([coff *
  // head_dim] kv, then score before the ape), so that a rollback can absorb the kept ones again.
  bool logging = false;
  std::vector<float> log;
};

struct LayerCache {
  KvRows window;               // [sliding_window, head_dim], slot = position % sliding_window
  CompressorState compressor;  // compress ratio > 0: entries fp8_nope (f32 without act_quant)
  CompressorState indexer;     // compress ratio 4: index keys [n_entries, index_head_dim], fp4
};

}  // namespace dsv4
