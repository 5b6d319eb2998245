// Header JSON padded with spaces to a multiple of 8 bytes, as the reference writer does.
#include "io/safetensors_writer.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dsv4 {

void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h;
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorData& t : tensors) {
    long long n = 1;
    for (long long d : t.shape) n *= d;
    DSV4_CHECK(t.bytes.size() == static_cast<size_t>(n) * dtype_size(t.dtype), path, ": tensor '",
               t.name, "' has ", t.bytes.size(), " bytes for shape ", shape_str(t.shape));
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  DSV4_CHECK(out.good(), path, ": cannot open for writing");
  const uint64_t len = header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const TensorData& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  DSV4_CHECK(out.good(), path, ": write failed");
}

}  // namespace dsv4
