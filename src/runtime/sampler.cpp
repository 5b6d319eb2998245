// Filters apply in the order temperature -> top-k -> softmax -> top-p -> min-p, then one draw
// from the renormalised distribution (vLLM's and llama.cpp's usual order).
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/check.h"

namespace dsv4 {

void SamplingParams::validate() const {
  DSV4_CHECK(std::isfinite(temperature) && temperature >= 0 && temperature <= 100,
             "temperature must be in [0, 100], got ", temperature);
  DSV4_CHECK(std::isfinite(top_p) && top_p > 0 && top_p <= 1, "top_p must be in (0, 1], got ", top_p);
  DSV4_CHECK(top_k >= 0, "top_k must be >= 0, got ", top_k);
  DSV4_CHECK(std::isfinite(min_p) && min_p >= 0 && min_p < 1, "min_p must be in [0, 1), got ", min_p);
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

double TokenDistribution::prob(int id) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == id) return weights[i] / total;
  return 0;
}

int Sampler::sample(std::span<const float> logits) {
  DSV4_CHECK(!logits.empty(), "sample: empty logits");
  if (greedy()) return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  return draw(distribution(logits));
}

TokenDistribution Sampler::distribution(std::span<const float> logits) const {
  const int n = static_cast<int>(logits.size());
  DSV4_CHECK(n > 0, "sample: empty logits");
  DSV4_CHECK(!greedy(), "a sampling distribution at temperature 0");
  TokenDistribution d;
  if (p_.top_k == 0 && p_.top_p == 1 && p_.min_p == 0) {  // plain softmax sampling: no sort
    const double mx = *std::max_element(logits.begin(), logits.end());
    d.ids.resize(n);
    d.weights.resize(n);
    for (int i = 0; i < n; ++i) {
      d.ids[i] = i;
      d.total += (d.weights[i] = std::exp((logits[i] - mx) / p_.temperature));
    }
    return d;
  }
  // Candidates sorted by logit, descending (stable: ties keep the lower id first).
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  const int k = p_.top_k > 0 ? std::min(p_.top_k, n) : n;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  idx.resize(k);
  std::vector<double> prob(k);
  const double mx = logits[idx[0]];
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += (prob[i] = std::exp((logits[idx[i]] - mx) / p_.temperature));
  for (double& v : prob) v /= sum;
  // Top-p: the smallest prefix whose mass reaches p.
  int keep = k;
  if (p_.top_p < 1) {
    double cum = 0;
    for (int i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  // Min-p: drop tokens below min_p times the most likely one.
  if (p_.min_p > 0)
    while (keep > 1 && prob[keep - 1] < p_.min_p * prob[0]) --keep;
  d.ids.assign(idx.begin(), idx.begin() + keep);
  d.weights.assign(prob.begin(), prob.begin() + keep);
  for (int i = 0; i < keep; ++i) d.total += prob[i];
  return d;
}

int Sampler::draw(const TokenDistribution& d) {
  DSV4_CHECK(!d.ids.empty() && d.total > 0, "a draw from an empty distribution");
  double u = std::uniform_real_distribution<double>(0.0, d.total)(rng_);
  for (size_t i = 0; i < d.ids.size(); ++i) {
    if (u < d.weights[i]) return d.ids[i];
    u -= d.weights[i];
  }
  // Rounding left u past the end: the last candidate with any weight.
  for (size_t i = d.ids.size(); i-- > 0;)
    if (d.weights[i] > 0) return d.ids[i];
  return d.ids.back();
}

double Sampler::uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

}  // namespace dsv4
