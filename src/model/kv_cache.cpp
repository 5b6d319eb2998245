// KvRows: the row layout of each storage format, packing through quant/block_pack.
#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "quant/block_pack.h"

namespace dsv4 {

KvRows::KvRows(KvFormat format, int dim, int rope_dim) : format_(format), dim_(dim), rope_dim_(rope_dim) {
  switch (format) {
    case KvFormat::f32: n_floats_ = dim; break;
    case KvFormat::fp8_nope:
      DSV4_CHECK(rope_dim >= 0 && rope_dim < dim && (dim - rope_dim) % kFp8Block == 0,
                 "kv cache: head_dim ", dim, " minus rope dims ", rope_dim, " is not a multiple of ",
                 kFp8Block, " (the FP8 block of the kv round trip)");
      n_codes_ = dim - rope_dim;
      n_scales_ = n_codes_ / kFp8Block;
      n_floats_ = rope_dim;
      break;
    case KvFormat::fp4:
      DSV4_CHECK(dim > 0 && dim % kFp4Block == 0, "kv cache: index_head_dim ", dim,
                 " is not a multiple of ", kFp4Block, " (the FP4 block of the index key round trip)");
      n_codes_ = dim / 2;
      n_scales_ = dim / kFp4Block;
      break;
  }
}

void KvRows::resize(size_t n) {
  n_ = n;
  codes_.resize(n * n_codes_, 0);
  scales_.resize(n * n_scales_, 127);  // scale 1
  floats_.resize(n * n_floats_, 0.0f);
}

void KvRows::assign_stored(size_t n, std::span<const uint8_t> codes, std::span<const uint8_t> scales,
                           std::span<const float> floats) {
  DSV4_CHECK(codes.size() == n * n_codes_ && scales.size() == n * n_scales_ && floats.size() == n * n_floats_,
             "kv cache: ", n, " stored rows of ", codes.size(), " code, ", scales.size(), " scale and ", floats.size(),
             " float values, for rows of ", n_codes_, ", ", n_scales_, " and ", n_floats_);
  n_ = n;
  codes_.assign(codes.begin(), codes.end());
  scales_.assign(scales.begin(), scales.end());
  floats_.assign(floats.begin(), floats.end());
}

void KvRows::push_back(std::span<const float> row) {
  resize(n_ + 1);
  try {
    store(n_ - 1, row);
  } catch (...) {
    resize(n_ - 1);  // a row that is not on the grid leaves the cache as it was
    throw;
  }
}

void KvRows::copy_row(size_t i, const KvRows& src, size_t j) {
  DSV4_CHECK(src.format_ == format_ && src.dim_ == dim_ && src.rope_dim_ == rope_dim_ && i < n_ && j < src.n_,
             "kv cache: copying row ", j, " of ", src.n_, " into row ", i, " of ", n_, " of another layout");
  std::copy_n(src.codes_.begin() + j * n_codes_, n_codes_, codes_.begin() + i * n_codes_);
  std::copy_n(src.scales_.begin() + j * n_scales_, n_scales_, scales_.begin() + i * n_scales_);
  std::copy_n(src.floats_.begin() + j * n_floats_, n_floats_, floats_.begin() + i * n_floats_);
}

void KvRows::store(size_t i, std::span<const float> row) {
  DSV4_CHECK(i < n_ && row.size() == static_cast<size_t>(dim_), "kv cache: row ", i, " of ", n_,
             ", width ", row.size(), " for ", dim_);
  uint8_t* codes = codes_.data() + i * n_codes_;
  uint8_t* scales = scales_.data() + i * n_scales_;
  float* floats = floats_.data() + i * n_floats_;
  switch (format_) {
    case KvFormat::f32: std::copy(row.begin(), row.end(), floats); break;
    case KvFormat::fp8_nope:
      pack_fp8_blocks(row.first(n_codes_), kFp8Block, {codes, static_cast<size_t>(n_codes_)},
                      {scales, static_cast<size_t>(n_scales_)});
      std::copy(row.begin() + n_codes_, row.end(), floats);
      break;
    case KvFormat::fp4:
      pack_fp4_blocks(row, kFp4Block, {codes, static_cast<size_t>(n_codes_)},
                      {scales, static_cast<size_t>(n_scales_)});
      break;
  }
}

void KvRows::load(size_t i, float* row) const {
  const uint8_t* codes = codes_.data() + i * n_codes_;
  const uint8_t* scales = scales_.data() + i * n_scales_;
  const float* floats = floats_.data() + i * n_floats_;
  switch (format_) {
    case KvFormat::f32: std::memcpy(row, floats, sizeof(float) * dim_); break;
    case KvFormat::fp8_nope:
      unpack_fp8_blocks({codes, static_cast<size_t>(n_codes_)}, {scales, static_cast<size_t>(n_scales_)},
                        kFp8Block, {row, static_cast<size_t>(n_codes_)});
      std::memcpy(row + n_codes_, floats, sizeof(float) * rope_dim_);
      break;
    case KvFormat::fp4:
      unpack_fp4_blocks({codes, static_cast<size_t>(n_codes_)}, {scales, static_cast<size_t>(n_scales_)},
                        kFp4Block, {row, static_cast<size_t>(dim_)});
      break;
  }
}

size_t KvRows::bytes() const { return codes_.size() + scales_.size() + sizeof(float) * floats_.size(); }

double KvRows::row_bytes(KvFormat format, int dim, int rope_dim) {
  switch (format) {
    case KvFormat::f32: return 4.0 * dim;
    case KvFormat::fp8_nope: return (dim - rope_dim) + (dim - rope_dim) / kFp8Block + 4.0 * rope_dim;
    case KvFormat::fp4: return dim / 2 + dim / kFp4Block;
  }
  return 0;
}

}  // namespace dsv4
