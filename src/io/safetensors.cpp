// safetensors parsing and validation. The format: https://github.com/huggingface/safetensors
#include "io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/float_bits.h"
#include "core/json_input.h"

namespace dsv4 {

namespace {

bool parse_dtype(const std::string& s, DType* out) {
  static const std::map<std::string, DType> table = {
      {"F8_E4M3", DType::F8_E4M3}, {"F8_E8M0", DType::F8_E8M0}, {"I8", DType::I8},
      {"U8", DType::U8},           {"BF16", DType::BF16},       {"F16", DType::F16},
      {"F32", DType::F32},         {"I32", DType::I32},         {"I64", DType::I64}};
  auto it = table.find(s);
  if (it == table.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E8M0: return "F8_E8M0";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F32: return "F32";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F8_E4M3:
    case DType::F8_E8M0:
    case DType::I8:
    case DType::U8: return 1;
    case DType::BF16:
    case DType::F16: return 2;
    case DType::F32:
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

long long TensorView::numel() const {
  long long n = 1;
  for (long long d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path, Residency residency)
    : file_(std::make_unique<MmapFile>(path, residency)) {
  const size_t size = file_->size();
  DSV4_CHECK(size >= 8, path, ": truncated safetensors file (", size,
             " bytes, fewer than the 8-byte header length)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);  // little-endian on every supported host
  DSV4_CHECK(header_len <= size - 8, path, ": header length ", header_len,
             " runs past the end of the file (", size, " bytes)");
  const char* hdr = reinterpret_cast<const char*>(file_->data() + 8);
  nlohmann::json j;
  try {
    j = parse_json(std::string_view(hdr, header_len));
  } catch (const std::exception& e) {
    fail(path, ": header is not valid JSON: ", e.what());
  }
  DSV4_CHECK(j.is_object(), path, ": header is not a JSON object");
  const uint8_t* data_begin = file_->data() + 8 + header_len;
  const size_t data_size = size - 8 - header_len;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
      continue;
    }
    const auto& e = *it;
    DSV4_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") &&
                   e.contains("data_offsets"),
               path, ": tensor '", name, "' lacks dtype, shape or data_offsets");
    TensorView t;
    t.name = name;
    t.file = path;
    DSV4_CHECK(e["dtype"].is_string(), path, ": tensor '", name, "': dtype is not a string");
    const std::string dt = e["dtype"].get<std::string>();
    DSV4_CHECK(parse_dtype(dt, &t.dtype), path, ": tensor '", name, "' has unknown dtype '", dt,
               "' (supported: F8_E4M3 F8_E8M0 I8 U8 BF16 F16 F32 I32 I64)");
    DSV4_CHECK(e["shape"].is_array(), path, ": tensor '", name, "': shape is not an array");
    // Checked products: a shape such as [2^32, 2^32] must not wrap around to a small size.
    unsigned long long elements = 1;
    for (const auto& d : e["shape"]) {
      DSV4_CHECK(d.is_number_integer() && d.get<long long>() >= 0, path, ": tensor '", name,
                 "': shape has a non-integer or negative entry");
      t.shape.push_back(d.get<long long>());
      DSV4_CHECK(!__builtin_mul_overflow(elements, static_cast<unsigned long long>(t.shape.back()), &elements) &&
                     elements <= static_cast<unsigned long long>(INT64_MAX) / 8,
                 path, ": tensor '", name, "': shape ", e["shape"].dump(), " has more elements than any file holds");
    }
    const auto& off = e["data_offsets"];
    DSV4_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                   off[1].is_number_unsigned(),
               path, ": tensor '", name, "': data_offsets must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    DSV4_CHECK(b <= en && en <= data_size, path, ": tensor '", name, "': data [", b, ", ", en,
               ") runs past the end of the file (data region is ", data_size,
               " bytes; file truncated?)");
    t.nbytes = en - b;
    const unsigned long long expect = static_cast<unsigned long long>(t.numel()) * dtype_size(t.dtype);
    DSV4_CHECK(t.nbytes == expect, path, ": tensor '", name, "' holds ", t.nbytes,
               " bytes but shape ", shape_str(t.shape), " of ", dt, " needs ", expect);
    t.data = data_begin + b;
    tensors_.emplace(name, std::move(t));
  }
  // No two tensors may share bytes: a crafted header could otherwise alias one tensor's data as
  // another's (writing one through a training run would change the other).
  std::vector<const TensorView*> by_offset;
  for (const auto& [name, t] : tensors_)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorView &prev = *by_offset[i - 1], &cur = *by_offset[i];
    DSV4_CHECK(prev.data + prev.nbytes <= cur.data, path, ": tensors '", prev.name, "' and '", cur.name,
               "' overlap (data_offsets [", prev.data - data_begin, ", ", prev.data - data_begin + prev.nbytes,
               ") and [", cur.data - data_begin, ", ", cur.data - data_begin + cur.nbytes, "))");
  }
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  DSV4_CHECK(it != tensors_.end(), path(), ": missing tensor '", name, "'");
  return it->second;
}

std::vector<float> to_f32(const TensorView& t) {
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::F32: std::memcpy(out.data(), t.data, n * 4); break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = bf16_to_f32(v);
      }
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = f16_to_f32(v);
      }
      break;
    default: fail(t.file, ": tensor '", t.name, "' is ", dtype_name(t.dtype), ", expected a float type");
  }
  return out;
}

}  // namespace dsv4
