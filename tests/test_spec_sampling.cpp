// Speculative sampling (runtime/speculative.h) against sampling the target alone, by a
// goodness-of-fit test. Many generations of one prompt with different seeds; the joint
// distribution of their first three tokens (the first drawn after the prefill, the next two by
// one or two verify passes: kept drafts, resampled rejections and the bonus token) against the
// target's exact joint distribution, computed with forward passes. Pearson's chi-square over
// the cells expected at least 5 times (the others pooled into one cell), for the triples and
// for the pairs of the first two tokens, each rejected at a false-alarm rate of 1e-4 (critical
// value by the Wilson-Hilferty approximation), so below 2e-3 for the whole file; the seeds are
// fixed, so a run repeats exactly.
//
// Drafters: the checkpoints' own (MTP on tiny, DSpark on tiny-dspark: random weights, so their
// drafts are mostly rejected and the residual distribution is what gets tested), and a hook
// drafting from a distribution close to the target's (most drafts kept, many rejected: both
// branches of the rule and chains of kept drafts).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <array>
#include <map>
#include <random>

#include "runtime/speculative.h"
#include "test_util.h"

namespace dsv4 {
namespace {

struct Case {
  std::string model;
  SpecMode mode;
  int draft;
  SamplingParams sampling;
  bool hook;  // drafts from draft_distributions instead of the checkpoint's drafter
};

std::string describe(const Case& c) {
  char s[160];
  std::snprintf(s, sizeof s, "%s %s draft %d%s, temperature %.2f top_p %.2f top_k %d", c.model.c_str(),
                spec_mode_name(c.mode), c.draft, c.hook ? " (hook)" : "", c.sampling.temperature, c.sampling.top_p,
                c.sampling.top_k);
  return s;
}

// p as a map id -> probability.
std::map<int, double> probabilities(const TokenDistribution& d) {
  std::map<int, double> p;
  for (size_t i = 0; i < d.ids.size(); ++i) p[d.ids[i]] += d.weights[i] / d.total;
  return p;
}

// The upper 1e-4 point of chi-square with df degrees of freedom (Wilson-Hilferty).
double chi2_critical(int df) {
  const double z = 3.719, a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

using Triple = std::array<int, 3>;

// Pearson's chi-square of the observed counts against n draws of the distribution: cells
// expected at least 5 times, the others pooled.
struct Fit {
  double chi2 = 0;
  int cells = 0;
};

Fit fit(const std::map<Triple, double>& want, const std::map<Triple, long long>& seen, int n) {
  Fit f;
  double rest_p = 1;
  long long rest_seen = n;
  for (const auto& [t, p] : want) {
    if (p * n < 5) continue;
    const auto at = seen.find(t);
    const double o = at == seen.end() ? 0 : static_cast<double>(at->second), e = p * n;
    f.chi2 += (o - e) * (o - e) / e;
    rest_p -= p;
    rest_seen -= static_cast<long long>(o);
    ++f.cells;
  }
  if (rest_p * n >= 1) {
    f.chi2 += (rest_seen - rest_p * n) * (rest_seen - rest_p * n) / (rest_p * n);
    ++f.cells;
  }
  return f;
}

class SpecSampling : public ::testing::TestWithParam<Case> {};

TEST_P(SpecSampling, TokensHaveTheTargetsDistribution) {
  const Case& tc = GetParam();
  Model m(test::golden_dir(tc.model));
  const int V = m.config().vocab_size;
  const Sampler target(tc.sampling);
  std::mt19937 rng(11);
  std::vector<int> prompt(9);
  for (int& t : prompt) t = static_cast<int>(rng() % V);

  // The prefill, shared by every generation (with its trace, which the drafter reads).
  Session base = m.new_session();
  ForwardTrace base_trace;
  base_trace.keep_layer_hidden = true;
  const std::vector<float> logits0 = m.forward(base, prompt, &base_trace);

  // The exact joint distribution of three tokens, and the rows after each first token (the
  // hook's drafts come from them).
  std::map<Triple, double> joint;
  std::map<int, std::vector<float>> row_after;
  for (const auto& [t1, p1] : probabilities(target.distribution(logits0))) {
    Session s1 = base;
    row_after[t1] = m.forward(s1, std::span<const int>(&t1, 1));
    for (const auto& [t2, p2] : probabilities(target.distribution(row_after[t1]))) {
      Session s2 = s1;
      const std::vector<float> l2 = m.forward(s2, std::span<const int>(&t2, 1));
      for (const auto& [t3, p3] : probabilities(target.distribution(l2))) joint[{t1, t2, t3}] = p1 * p2 * p3;
    }
  }

  // The hook's q: the target's row after the anchor at twice the temperature and a wider top-k
  // (a fixed small distribution for anchors it has no row for); every draft of a pass is drawn
  // from it.
  SamplingParams wider = tc.sampling;
  wider.temperature *= 2.0f;
  wider.top_k = tc.sampling.top_k ? tc.sampling.top_k + 4 : 0;
  const Sampler hook_q(wider);
  TokenDistribution fallback;
  for (int i = 0; i < 16; ++i) fallback.ids.push_back(i), fallback.weights.push_back(1.0 + i), fallback.total += 1.0 + i;

  // The hook's cases are where a wrong rule shows (most drafts kept or resampled): more samples.
  // At 10000 a cell of probability 0.05 has a standard error of 0.0022: a rule off by a tenth
  // of that cell's mass is 2.3 errors out in that cell alone.
  const int n = std::getenv("DSV4_SANITIZER") ? 800 : tc.hook ? 10000 : 2000;
  std::map<Triple, long long> seen;
  SpecStats stats;
  for (int i = 0; i < n; ++i) {
    SamplingParams sp = tc.sampling;
    sp.seed = 1000003ull * (i + 1);
    SpecDecoder d(m, tc.mode, tc.draft, V, sp);
    if (tc.hook)
      d.draft_distributions = [&](int anchor, int count) {
        const auto row = row_after.find(anchor);
        return std::vector<TokenDistribution>(
            count, row == row_after.end() ? fallback : hook_q.distribution(row->second));
      };
    Session s = base;
    std::vector<int> tokens = {d.prefilled(s, prompt, base_trace, 0, logits0, -1)};
    while (tokens.size() < 3) {
      const SpecDecoder::Chosen c = d.step(s);
      tokens.insert(tokens.end(), c.tokens.begin(), c.tokens.end());
    }
    ++seen[{tokens[0], tokens[1], tokens[2]}];
    stats += d.stats();
  }

  // The triples, and the pairs of the first two tokens (fewer cells, more power).
  std::map<Triple, double> joint2;
  std::map<Triple, long long> seen2;
  for (const auto& [t, p] : joint) joint2[{t[0], t[1], -1}] += p;
  for (const auto& [t, count] : seen) seen2[{t[0], t[1], -1}] += count;
  for (const auto& [t, count] : seen) ASSERT_TRUE(joint.count(t)) << "a sequence the target never samples";
  const Fit triples = fit(joint, seen, n), pairs = fit(joint2, seen2, n);
  std::printf("%s: %d samples; triples: %d cells, chi2 %.1f (critical %.1f); pairs: %d cells, chi2 %.1f (critical "
              "%.1f); drafts accepted %.2f, %.2f tokens per pass\n",
              describe(tc).c_str(), n, triples.cells, triples.chi2, chi2_critical(triples.cells - 1), pairs.cells,
              pairs.chi2, chi2_critical(pairs.cells - 1), stats.acceptance(), stats.tokens_per_step());
  ASSERT_GE(pairs.cells, 10) << describe(tc) << ": too few cells to test";
  EXPECT_LT(triples.chi2, chi2_critical(triples.cells - 1)) << describe(tc);
  EXPECT_LT(pairs.chi2, chi2_critical(pairs.cells - 1)) << describe(tc);
  // The hook's first draft is often kept (its later ones, drawn from the same q, seldom).
  if (tc.hook) {
    EXPECT_GT(stats.tokens_per_step(), 1.3) << describe(tc);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Drafters, SpecSampling,
    // top_k bounds the candidates (the random-weight goldens are nearly flat over 1024 ids),
    // so the exact joint distribution takes few forward passes and its cells are well filled.
    ::testing::Values(Case{"tiny", SpecMode::mtp, 3, {.temperature = 1.0f, .top_k = 6}, false},
                      Case{"tiny-dspark", SpecMode::dspark, 3, {.temperature = 1.3f, .top_p = 0.6f, .top_k = 8}, false},
                      Case{"tiny", SpecMode::mtp, 1, {.temperature = 0.8f, .top_p = 0.95f, .top_k = 8}, true},
                      Case{"tiny-dspark", SpecMode::dspark, 4, {.temperature = 1.0f, .top_k = 6}, true},
                      Case{"tiny-dspark", SpecMode::dspark, 2,
                           {.temperature = 0.6f, .top_p = 0.8f, .top_k = 10, .min_p = 0.05f}, true}),
    [](const auto& info) { return "case" + std::to_string(info.index); });

}  // namespace
}  // namespace dsv4
