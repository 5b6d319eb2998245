// A histogram over fixed bucket bounds, counted as Prometheus counts them: bucket i holds the
// observations <= bounds[i] (cumulative when rendered), plus their count and sum.
#pragma once

#include <algorithm>
#include <span>
#include <vector>

namespace dsv4 {

struct Histogram {
  std::vector<double> bounds;              // ascending upper bounds; +Inf is implied
  std::vector<unsigned long long> counts;  // per bucket, not cumulative; bounds.size() + 1
  unsigned long long count = 0;
  double sum = 0;

  explicit Histogram(std::vector<double> b = {}) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double x) {
    counts[std::lower_bound(bounds.begin(), bounds.end(), x) - bounds.begin()]++;
    ++count;
    sum += x;
  }
};

// Seconds, from 1 ms to 1 min: forward steps and requests alike.
inline std::vector<double> seconds_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

}  // namespace dsv4
