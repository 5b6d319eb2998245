// A batched step's rows come from several sessions. Segment i covers rows [row0, row0 + n) of
// the step: n consecutive tokens of one session at positions pos0 .. pos0 + n - 1, with that
// session's caches of the layer being run. Row-wise work (projections, norms, experts) runs
// over all rows at once; what reads or writes a cache runs per segment.
#pragma once

#include "model/kv_cache.h"

namespace dsv4 {

struct Segment {
  int row0 = 0, n = 0;
  long long pos0 = 0;
  LayerCache* cache = nullptr;
};

}  // namespace dsv4
