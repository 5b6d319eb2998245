// A training batch's sequences stacked as the rows of one matrix, so that every matrix product
// of a step is one GEMM over all of its tokens. Sequence s holds rows [start(s), start(s) +
// len(s)), its tokens at positions 0 .. len(s) - 1; what looks across tokens (attention, the
// compressors, the indexer) stays inside a sequence.
#pragma once

#include <numeric>
#include <span>
#include <vector>

#include "core/check.h"

namespace dsv4 {

class Segments {
 public:
  explicit Segments(std::span<const int> lens) : lens_(lens.begin(), lens.end()), starts_(lens.size() + 1, 0) {
    for (size_t s = 0; s < lens.size(); ++s) {
      DSV4_CHECK(lens[s] > 0, "train: sequence ", s, " of the batch is empty");
      starts_[s + 1] = starts_[s] + lens[s];
    }
  }
  static Segments one(int n) { return Segments(std::vector<int>{n}); }

  int count() const { return static_cast<int>(lens_.size()); }
  int rows() const { return starts_.back(); }
  int len(int s) const { return lens_[s]; }
  int start(int s) const { return starts_[s]; }
  // The first compressed entry of sequence s when each holds len / ratio of them.
  int entry_start(int s, int ratio) const {
    int e = 0;
    for (int j = 0; j < s; ++j) e += lens_[j] / ratio;
    return e;
  }
  int entries(int ratio) const { return entry_start(count(), ratio); }
  // Each row's position in its sequence.
  std::vector<long long> positions() const {
    std::vector<long long> pos(rows());
    for (int s = 0; s < count(); ++s) std::iota(pos.begin() + start(s), pos.begin() + start(s) + len(s), 0LL);
    return pos;
  }

 private:
  std::vector<int> lens_, starts_;
};

}  // namespace dsv4
