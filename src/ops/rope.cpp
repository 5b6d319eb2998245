// The frequencies are computed in float32 step by step as torch does in the reference (the
// correction range in double, as Python's math does), and each angle is the float32 product
// pos * freq, so cos / sin agree with the reference's table to the last bit or so.
#include "ops/rope.h"

#include <algorithm>
#include <atomic>
#include <cmath>

namespace dsv4 {

namespace {

std::atomic<uint64_t> next_id{0};  // 0: no Rope (an empty cache)

double correction_dim(double num_rotations, int dim, double base, int max_seq_len) {
  return dim * std::log(max_seq_len / (num_rotations * 2 * M_PI)) / (2 * std::log(base));
}

}  // namespace

Rope::Rope(int rope_dim, double theta, int original_seq_len, double factor, double beta_fast,
           double beta_slow)
    : dim_(rope_dim), freqs_(rope_dim / 2), id_(next_id.fetch_add(1) + 1) {
  const float base = static_cast<float>(theta);
  for (int i = 0; i < dim_ / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim_);
    freqs_[i] = 1.0f / static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(e)));
  }
  if (original_seq_len > 0) {
    double low = std::floor(correction_dim(beta_fast, dim_, theta, original_seq_len));
    double high = std::ceil(correction_dim(beta_slow, dim_, theta, original_seq_len));
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim_ - 1));
    if (low == high) high += 0.001;
    const float flow = static_cast<float>(low), fspan = static_cast<float>(high - low);
    const float ffactor = static_cast<float>(factor);
    for (int i = 0; i < dim_ / 2; ++i) {
      const float ramp = std::clamp((static_cast<float>(i) - flow) / fspan, 0.0f, 1.0f);
      const float smooth = 1.0f - ramp;
      freqs_[i] = freqs_[i] / ffactor * (1.0f - smooth) + freqs_[i] * smooth;
    }
  }
}

void Rope::apply(float* x, long long pos, bool inverse) const {
  thread_local struct {
    uint64_t id = 0;
    long long pos = 0;
    std::vector<float> cos, sin;
  } last;
  if (last.id != id_ || last.pos != pos) {
    const float p = static_cast<float>(pos);
    last.cos.resize(dim_ / 2), last.sin.resize(dim_ / 2);
    for (int i = 0; i < dim_ / 2; ++i) {
      const float angle = p * freqs_[i];
      last.cos[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      last.sin[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    last.id = id_, last.pos = pos;
  }
  for (int i = 0; i < dim_ / 2; ++i) {
    const float c = last.cos[i];
    float s = last.sin[i];
    if (inverse) s = -s;
    const float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * c - b * s;
    x[2 * i + 1] = a * s + b * c;
  }
}

}  // namespace dsv4
