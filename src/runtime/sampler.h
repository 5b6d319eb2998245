// Token sampling: temperature, top-k, top-p (nucleus), min-p, with a seeded generator so the
// same seed gives the same tokens. Temperature 0 is greedy (ties to the lower id). The official
// defaults of DeepSeek-V4 are temperature 1.0, top-p 1.0.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace dsv4 {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;   // (0, 1]
  int top_k = 0;        // 0 = off
  float min_p = 0.0f;   // [0, 1)
  uint64_t seed = 0;

  void validate() const;  // throws Error naming the bad parameter
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  int sample(std::span<const float> logits);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace dsv4
