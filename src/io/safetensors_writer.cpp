// Header JSON padded with spaces to a multiple of 8 bytes, as the reference writer does.
#include "io/safetensors_writer.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/write_file.h"

namespace dsv4 {

namespace {

size_t byte_size(const TensorData& t) {
  long long n = 1;
  for (long long d : t.shape) n *= d;
  return static_cast<size_t>(n) * dtype_size(t.dtype);
}

}  // namespace

void write_safetensors_streamed(const std::string& path, const std::vector<TensorData>& tensors,
                                const std::function<void(size_t, std::vector<uint8_t>&)>& fill,
                                const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h;
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorData& t : tensors) {
    const size_t size = byte_size(t);
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  DSV4_CHECK(out.good(), path, ": cannot open for writing");
  const uint64_t len = header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    fill(i, bytes);
    DSV4_CHECK(bytes.size() == byte_size(tensors[i]), path, ": tensor '", tensors[i].name, "' has ", bytes.size(),
               " bytes for shape ", shape_str(tensors[i].shape));
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  close_checked(out, path);
}

void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_safetensors_streamed(path, tensors, [&](size_t i, std::vector<uint8_t>& b) { b = tensors[i].bytes; }, metadata);
}

}  // namespace dsv4
