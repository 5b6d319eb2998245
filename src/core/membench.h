// The machine's own memory bandwidth, measured STREAM-style (McCalpin's triad a = b + s * c
// over arrays far larger than the caches), with the same thread pool the kernels use.
#pragma once

#include <cstddef>

namespace dsv4 {

struct MemBandwidth {
  double triad_gbps = 0;  // STREAM convention: 3 arrays x 4 bytes per element per pass
  double read_gbps = 0;   // a pure read (sum) of one array, the access pattern of a decode step
};

MemBandwidth measure_memory_bandwidth(size_t bytes_per_array = size_t(512) << 20, int repeats = 5);

}  // namespace dsv4
