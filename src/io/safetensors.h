// One safetensors file, memory-mapped: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the raw data. Every entry is checked against the
// file (known dtype, offsets inside the data region, byte count = elements x dtype size) when
// the file is opened, so later code can trust a TensorView.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap_file.h"

namespace dsv4 {

enum class DType { F8_E4M3, F8_E8M0, I8, U8, BF16, F16, F32, I32, I64 };

const char* dtype_name(DType t);
size_t dtype_size(DType t);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<long long> shape;  // as stored; I8 packed FP4 has half the logical last dim
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // the file it lives in, for messages

  long long numel() const;
};

class SafetensorsFile {
 public:
  // Throws Error naming path and problem.
  explicit SafetensorsFile(const std::string& path, Residency residency = Residency::mapped);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_->path(); }

  // Throws Error if absent.
  const TensorView& get(const std::string& name) const;
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }

 private:
  std::unique_ptr<MmapFile> file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Copies a float-like tensor (F32, BF16, F16) into float32; throws for other dtypes.
std::vector<float> to_f32(const TensorView& t);

}  // namespace dsv4
