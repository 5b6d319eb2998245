#include "quant/linear_profile.h"

#include <array>
#include <atomic>

#include "core/thread_pool.h"

namespace dsv4 {

namespace {

constexpr int kFormats = 4, kInputs = 2, kTokenBuckets = 5, kPlaces = 2;
constexpr std::array<const char*, kFormats> kFormatNames = {"fp8", "fp4", "bf16", "f32"};
constexpr std::array<const char*, kTokenBuckets> kBucketNames = {"1", "2-3", "4-8", "9-16", "17+"};

struct Cell {
  std::atomic<long long> calls{0}, nanoseconds{0}, bytes{0};
};

std::atomic<bool> recording{false};
Cell cells[kFormats][kInputs][kTokenBuckets][kPlaces];

int bucket(int n) { return n == 1 ? 0 : n <= 3 ? 1 : n <= 8 ? 2 : n <= 16 ? 3 : 4; }

double weight_bytes(const Linear& w, int rows) {
  const double values = static_cast<double>(rows) * w.in;
  switch (w.format) {
    case WeightFormat::fp8: return values;
    case WeightFormat::fp4: return values / 2;
    case WeightFormat::bf16: return values * 2;
    case WeightFormat::f32: return values * 4;
  }
  return values;
}

}  // namespace

void linear_profile_start() {
  for (auto& f : cells)
    for (auto& i : f)
      for (auto& b : i)
        for (Cell& c : b) c.calls = c.nanoseconds = c.bytes = 0;
  recording.store(true, std::memory_order_relaxed);
}

bool linear_profile_on() { return recording.load(std::memory_order_relaxed); }

void linear_profile_record(const Linear& w, bool quantize_input, int n, int rows, double seconds) {
  const bool quantized = (w.format == WeightFormat::fp8 || w.format == WeightFormat::fp4) && quantize_input;
  Cell& c = cells[static_cast<int>(w.format)][quantized ? 0 : 1][bucket(n)][ThreadPool::inside_parallel() ? 1 : 0];
  c.calls.fetch_add(1, std::memory_order_relaxed);
  c.nanoseconds.fetch_add(static_cast<long long>(seconds * 1e9), std::memory_order_relaxed);
  c.bytes.fetch_add(static_cast<long long>(weight_bytes(w, rows)), std::memory_order_relaxed);
}

std::vector<LinearProfileRow> linear_profile_stop() {
  recording.store(false, std::memory_order_relaxed);
  std::vector<LinearProfileRow> rows;
  for (int f = 0; f < kFormats; ++f)
    for (int i = 0; i < kInputs; ++i)
      for (int b = 0; b < kTokenBuckets; ++b)
        for (int p = 0; p < kPlaces; ++p) {
          const Cell& c = cells[f][i][b][p];
          if (c.calls == 0) continue;
          rows.push_back({kFormatNames[f], i == 1, kBucketNames[b], p == 1, c.calls.load(),
                          static_cast<double>(c.nanoseconds.load()) / 1e9, static_cast<double>(c.bytes.load())});
        }
  return rows;
}

}  // namespace dsv4
