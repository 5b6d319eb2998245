// Writing safetensors files (tests now; checkpoint conversion and training later).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace dsv4 {

struct TensorData {
  std::string name;
  DType dtype;
  std::vector<long long> shape;
  std::vector<uint8_t> bytes;
};

// Tensors are laid out in the given order; throws Error if a byte count does not match.
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Streams large files: `tensors` gives names, dtypes and shapes (bytes left empty); fill(i,
// bytes) produces tensor i's bytes just before they are written, so only one tensor is in
// memory at a time.
void write_safetensors_streamed(const std::string& path, const std::vector<TensorData>& tensors,
                                const std::function<void(size_t, std::vector<uint8_t>&)>& fill,
                                const std::map<std::string, std::string>& metadata = {});

}  // namespace dsv4
