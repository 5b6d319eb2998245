// Per-thread staging buffers reused from call to call. A prefill's linear() stages tens of MB
// (quantized inputs, packed tiles); fresh allocations that size come from mmap and cost a page
// fault per 4 KiB, about a tenth of a 512-token GEMM on this machine. One buffer per slot and
// thread, grown when a call needs more, never shrunk (its high-water mark is one layer's
// largest input), with unspecified contents.
#pragma once

#include <cstddef>
#include <span>

namespace dsv4 {

enum class Scratch { linear_inputs, linear_scales, kernel_inputs, kernel_scales, kernel_codes, kernel_sums, kernel_flags, kCount };

// Valid until this thread asks for the same slot again.
template <typename T>
std::span<T> scratch(Scratch slot, size_t n);

}  // namespace dsv4
