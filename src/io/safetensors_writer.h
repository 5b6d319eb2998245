// Writing safetensors files (tests now; checkpoint conversion and training later).
#pragma once

#include <cstdint>
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

}  // namespace dsv4
