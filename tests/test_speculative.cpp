// Greedy speculative decoding (runtime/speculative.h) against decoding one token at a time:
// the same tokens with bit-for-bit the same logits, with the checkpoints' own drafters (DSpark
// on tiny-dspark, MTP on tiny) and with an oracle drafter that proposes the right tokens with
// random errors (so that every number of accepted drafts, 0 .. draft, happens: random-weight
// drafters are almost never right). Generations cross many compressed-block boundaries (ratios
// 4 and 16; 4 and 128 in tiny-long) and wrap the window ring many times. Run on every kernel
// path by ctest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "core/check.h"
#include "runtime/speculative.h"
#include "test_util.h"

namespace dsv4 {
namespace {

struct Greedy {
  std::vector<int> tokens;
  std::vector<std::vector<float>> logits;
  SpecStats stats;
};

Greedy run(const Model& m, SpecMode mode, int draft, std::span<const int> prompt, int n,
           std::function<std::vector<int>(int, int)> override_draft = {}) {
  GreedyDecoder d(m, mode, draft, m.config().vocab_size);
  d.draft_override = std::move(override_draft);
  Session s = m.new_session();
  d.prefill(s, prompt);
  Greedy g{d.first().tokens, d.first().logits, {}};
  while (static_cast<int>(g.tokens.size()) < n) {
    GreedyDecoder::Chosen c = d.step(s);
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      g.tokens.push_back(c.tokens[i]);
      g.logits.push_back(std::move(c.logits[i]));
    }
  }
  g.tokens.resize(n);
  g.logits.resize(n);
  g.stats = d.stats();
  return g;
}

void expect_same(const Greedy& want, const Greedy& got, const std::string& what) {
  ASSERT_EQ(got.tokens, want.tokens) << what;
  for (size_t i = 0; i < want.logits.size(); ++i)
    ASSERT_EQ(test::max_abs_err(got.logits[i], want.logits[i]).err, 0.0) << what << ": logits of token " << i;
}

class SpeculativeCase : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(SpeculativeCase, GreedyOutputIsTheNonSpeculativeOne) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  const ModelConfig& c = m.config();
  const SpecMode own = default_spec_mode(c);
  ASSERT_NE(own, SpecMode::off);
  // DSpark's runs take ~5x longer per token (five drafts and three stages per pass). Shorter
  // under a sanitizer (.ci/sanitizers sets DSV4_SANITIZER) and on the AVX2 and scalar paths
  // (ctest's _avx2 and _scalar runs), still crossing hundreds of block boundaries.
  const bool other_path = std::getenv("DSV4_NO_AVX2") || std::getenv("DSV4_NO_AVX512");
  const int n = std::getenv("DSV4_SANITIZER") ? 200 : other_path ? (own == SpecMode::dspark ? 300 : 800)
                                                                 : (own == SpecMode::dspark ? 1000 : 3000);
  std::mt19937 rng(5);
  std::vector<int> prompt(21);
  for (int& t : prompt) t = static_cast<int>(rng() % c.vocab_size);
  const Greedy plain = run(m, SpecMode::off, 0, prompt, n);

  for (int draft = 1; draft <= max_draft(c, own); ++draft) {
    const Greedy own_drafts = run(m, own, draft, prompt, n);
    expect_same(plain, own_drafts, name + " " + spec_mode_name(own) + " draft " + std::to_string(draft));
    // The oracle: the right continuation, each proposal wrong with probability 0.3.
    size_t chosen = 0;  // tokens chosen before the proposal's anchor
    std::mt19937 flips(draft);
    auto oracle = [&](int anchor, int count) {
      const auto at = std::find(plain.tokens.begin() + static_cast<long>(chosen), plain.tokens.end(), anchor);
      chosen = static_cast<size_t>(at - plain.tokens.begin()) + 1;
      std::vector<int> p;
      for (int k = 0; k < count; ++k) {
        const size_t i = std::min(chosen + k, plain.tokens.size() - 1);
        p.push_back(flips() % 10 < 3 ? (plain.tokens[i] + 1) % c.vocab_size : plain.tokens[i]);
      }
      return p;
    };
    const Greedy oracle_drafts = run(m, own, draft, prompt, n, oracle);
    expect_same(plain, oracle_drafts, name + " oracle draft " + std::to_string(draft));
    EXPECT_GT(oracle_drafts.stats.acceptance(), 0.3) << draft;
    EXPECT_LT(oracle_drafts.stats.steps, plain.stats.steps);
    std::printf("%s %s draft %d: own drafter %.2f accepted, %.2f tokens per pass; oracle %.2f accepted, %.2f per pass\n",
                name.c_str(), act_quant ? "rounded" : "smooth", draft, own_drafts.stats.acceptance(),
                own_drafts.stats.tokens_per_step(), oracle_drafts.stats.acceptance(),
                oracle_drafts.stats.tokens_per_step());
  }
}

INSTANTIATE_TEST_SUITE_P(Drafters, SpeculativeCase,
                         ::testing::Combine(::testing::Values("tiny-dspark", "tiny", "tiny-long"), ::testing::Bool()),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + (std::get<1>(info.param) ? "_act_quant" : "_smooth");
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(Speculative, BadSettingsAreRefused) {
  Model tiny(test::golden_dir("tiny")), dspark(test::golden_dir("tiny-dspark"));
  const int V = 1024;
  auto refused = [](const std::function<void()>& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no error, expected one with '" << part << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused([&] { GreedyDecoder(tiny, SpecMode::dspark, 1, V); }, "has no DSpark drafter");
  refused([&] { GreedyDecoder(dspark, SpecMode::mtp, 1, V); }, "--spec dspark");
  refused([&] { GreedyDecoder(dspark, SpecMode::dspark, 0, V); }, "--draft 0");
  refused([&] { GreedyDecoder(dspark, SpecMode::dspark, 6, V); }, "proposes 1 .. 5");
  refused([&] { GreedyDecoder(tiny, SpecMode::mtp, 2, V); }, "proposes 1 .. 1");
  refused([&] { parse_spec_mode("eagle"); }, "'eagle' is not one of off, mtp, dspark");
}

}  // namespace
}  // namespace dsv4
