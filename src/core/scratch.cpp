#include "core/scratch.h"

#include <cstdint>
#include <memory>

namespace dsv4 {

namespace {

struct Buffer {
  std::unique_ptr<std::byte[]> data;
  size_t bytes = 0;
};

thread_local Buffer buffers[static_cast<int>(Scratch::kCount)];

}  // namespace

template <typename T>
std::span<T> scratch(Scratch slot, size_t n) {
  Buffer& b = buffers[static_cast<int>(slot)];
  const size_t bytes = n * sizeof(T);
  if (bytes > b.bytes) {
    b.data.reset(new std::byte[bytes]);  // new[] of std::byte is suitably aligned for T
    b.bytes = bytes;
  }
  return {reinterpret_cast<T*>(b.data.get()), n};
}

template std::span<float> scratch<float>(Scratch, size_t);
template std::span<uint16_t> scratch<uint16_t>(Scratch, size_t);
template std::span<int16_t> scratch<int16_t>(Scratch, size_t);
template std::span<int32_t> scratch<int32_t>(Scratch, size_t);
template std::span<uint8_t> scratch<uint8_t>(Scratch, size_t);

}  // namespace dsv4
