// A batched step's rows come from several sessions. Segment i covers rows [row0, row0 + n) of
// the step: n consecutive tokens of one session at positions pos0 .. pos0 + n - 1, with that
// session's caches of the layer being run. Row-wise work (projections, norms, experts) runs
// over all rows at once; what reads or writes a cache runs per segment.
#pragma once

#include <algorithm>
#include <span>

#include "core/thread_pool.h"
#include "model/kv_cache.h"

namespace dsv4 {

struct Segment {
  int row0 = 0, n = 0;
  long long pos0 = 0;
  LayerCache* cache = nullptr;
};

// Runs fn(segment) for every segment. A batch of decode steps (every segment a few rows) gives
// each thread whole segments: the per-session work is small, and split over the threads one
// session at a time it paid a barrier per session, layer and stage (8 sessions' attention took
// 6x one's). Otherwise the segments go one after another, each spreading its own work over the
// threads. fn computes the same values either way (its parallel_for calls run inline on a
// worker), and a segment touches only its own session's cache. together = false keeps them one
// after another: fn makes collective calls, which every rank must make in the same order.
template <typename Fn>
void for_each_segment(std::span<const Segment> segs, const Fn& fn, bool together = true) {
  constexpr int kFewRows = 4;
  const bool few = std::all_of(segs.begin(), segs.end(), [](const Segment& sg) { return sg.n <= kFewRows; });
  if (together && segs.size() > 1 && few) {
    pool().parallel_for(segs.size(), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) fn(segs[i]);
    });
    return;
  }
  for (const Segment& sg : segs) fn(sg);
}

}  // namespace dsv4
