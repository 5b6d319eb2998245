// Token sampling: temperature, top-k, top-p (nucleus), min-p, with a seeded generator so the
// same seed gives the same tokens. Temperature 0 is greedy (ties to the lower id). The official
// defaults of DeepSeek-V4 are temperature 1.0, top-p 1.0.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace dsv4 {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;   // (0, 1]
  int top_k = 0;        // 0 = off
  float min_p = 0.0f;   // [0, 1)
  uint64_t seed = 0;

  void validate() const;  // throws Error naming the bad parameter
};

// What sampling draws from: the candidates that survive the filters, with weights (summing to
// total) in the order a draw walks them.
struct TokenDistribution {
  std::vector<int> ids;
  std::vector<double> weights;
  double total = 0;
  double prob(int id) const;  // weight / total; 0 for a token that is not a candidate
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  const SamplingParams& params() const { return p_; }
  bool greedy() const { return p_.temperature == 0; }
  // Greedy: the argmax (ties to the lower id); else draw(distribution(logits)).
  int sample(std::span<const float> logits);
  // The filtered distribution of logits (temperature > 0).
  TokenDistribution distribution(std::span<const float> logits) const;
  int draw(const TokenDistribution& d);  // one token, by its weight (d.total > 0)
  double uniform();                      // in [0, 1)

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace dsv4
