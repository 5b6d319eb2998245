// Rows in fixed chunks over the threads: the chunks depend on the row count alone, not on the
// number of threads, so sums taken per chunk and then added in chunk order come out the same
// bits for any thread count (the training step's promise).
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/thread_pool.h"

namespace dsv4 {

inline size_t row_chunk_count(size_t rows, size_t chunk) { return std::max<size_t>(1, (rows + chunk - 1) / chunk); }

// fn(k, r0, r1) for chunk k of rows [r0, r1), chunks in parallel.
template <class Fn>
void for_row_chunks(size_t rows, size_t chunk, Fn&& fn) {
  pool().parallel_for(row_chunk_count(rows, chunk), [&](size_t k0, size_t k1) {
    for (size_t k = k0; k < k1; ++k) fn(k, k * chunk, std::min(rows, (k + 1) * chunk));
  });
}

}  // namespace dsv4
