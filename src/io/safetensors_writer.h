// Writing safetensors files (tests now; checkpoint conversion and training later).
#pragma once

#include <cstdint>
#include <cstring>
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

// A tensor's bytes as the file holds them (little-endian, as this machine).
template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

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
