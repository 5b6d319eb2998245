// A std::vector whose resize and size constructor leave the new elements unset (an explicit
// value, as in v.assign(n, 0.0f), still sets them). For the trainer's large per-step buffers
// (a step's logits are 16 MB) that the next op overwrites whole: a std::vector<float> zeroes
// them first, on one thread, ~0.5 GB a step on the default model.
#pragma once

#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace dsv4 {

template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) {
    ::new (static_cast<void*>(p)) U;  // default-initialized: no value for a float
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

using UninitFloats = std::vector<float, DefaultInitAllocator<float>>;

}  // namespace dsv4
