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
  SpecDecoder d(m, mode, draft, m.config().vocab_size, SamplingParams{.temperature = 0});
  d.draft_override = std::move(override_draft);
  Session s = m.new_session();
  d.prefill(s, prompt);
  Greedy g{d.first().tokens, d.first().logits, {}};
  while (static_cast<int>(g.tokens.size()) < n) {
    SpecDecoder::Chosen c = d.step(s);
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

// A drafter that knows the right continuation (truth) and makes each proposal wrong with
// probability 0.3.
std::function<std::vector<int>(int, int)> oracle(const std::vector<int>& truth, int vocab, unsigned seed) {
  struct State {
    size_t chosen = 0;  // tokens chosen before the proposal's anchor
    std::mt19937 flips;
  };
  auto st = std::make_shared<State>(State{0, std::mt19937(seed)});
  return [st, &truth, vocab](int anchor, int count) {
    const auto at = std::find(truth.begin() + static_cast<long>(st->chosen), truth.end(), anchor);
    st->chosen = static_cast<size_t>(at - truth.begin()) + 1;
    std::vector<int> p;
    for (int k = 0; k < count; ++k) {
      const size_t i = std::min(st->chosen + k, truth.size() - 1);
      p.push_back(st->flips() % 10 < 3 ? (truth[i] + 1) % vocab : truth[i]);
    }
    return p;
  };
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
  // (ctest's _avx2 and _scalar runs). Every length crosses dozens of ratio-4 and ratio-16
  // block boundaries and wraps the 8- or 16-token window ring dozens of times; tiny-long's
  // MTP runs (1000 and 400 tokens) cross 7 and 3 of its 128-token blocks.
  const bool dspark = own == SpecMode::dspark;
  const int n = std::getenv("DSV4_SANITIZER") ? 200
                : test::other_kernel_path()  ? (dspark ? 150 : 400)
                                             : (dspark ? 400 : 1000);
  std::mt19937 rng(5);
  std::vector<int> prompt(21);
  for (int& t : prompt) t = static_cast<int>(rng() % c.vocab_size);
  const Greedy plain = run(m, SpecMode::off, 0, prompt, n);

  // Every block size of DSpark; MTP alone and chained as far as it goes.
  for (int draft = 1; draft <= max_draft(c, own); draft += own == SpecMode::mtp ? max_draft(c, own) - 1 : 1) {
    const Greedy own_drafts = run(m, own, draft, prompt, n);
    expect_same(plain, own_drafts, name + " " + spec_mode_name(own) + " draft " + std::to_string(draft));
    const Greedy oracle_drafts = run(m, own, draft, prompt, n, oracle(plain.tokens, c.vocab_size, draft));
    expect_same(plain, oracle_drafts, name + " oracle draft " + std::to_string(draft));
    // Each proposal is right with probability 0.7, so a block of d keeps on average
    // (0.7 + 0.7^2 + ... + 0.7^d) / d of its drafts: 0.39 at d = 5, 0.29 over 150 tokens seen.
    EXPECT_GT(oracle_drafts.stats.acceptance(), 0.2) << draft;
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

// Speculative sessions batched as the server batches them (runtime/scheduler.h): each pass
// feeds every session's rows in one forward (the verify rows of the speculative ones, a token
// of a plain one, prefill chunks of the others), and each session gets the tokens and logits
// it gets alone. DSpark with blocks of 5 and of 2, no drafter, and a late joiner whose prompt
// is fed in chunks alongside the others' verify steps.
TEST(Speculative, BatchedSessionsGetWhatTheyGetAlone) {
  Model m(test::golden_dir("tiny-dspark"));
  const ModelConfig& c = m.config();
  const int n = test::short_rerun() ? 120 : 400;
  struct Member {
    SpecMode mode = SpecMode::off;
    int draft = 0, prompt_len = 0, join_at = 0;  // join_at: the pass at which its prefill starts
    std::vector<int> prompt;
    Greedy alone, batched;
    std::unique_ptr<SpecDecoder> d;
    Session s;
    size_t fed = 0;  // prompt tokens fed
  };
  std::vector<Member> ms(4);
  const int settings[4][3] = {{5, 13, 0}, {2, 40, 0}, {0, 7, 0}, {3, 150, 25}};  // draft (0: off), prompt, join_at
  for (int i = 0; i < 4; ++i) {
    ms[i].mode = settings[i][0] ? SpecMode::dspark : SpecMode::off;
    ms[i].draft = settings[i][0];
    ms[i].prompt_len = settings[i][1];
    ms[i].join_at = settings[i][2];
  }
  std::mt19937 rng(9);
  for (Member& x : ms) {
    x.prompt.resize(x.prompt_len);
    for (int& t : x.prompt) t = static_cast<int>(rng() % c.vocab_size);
    x.alone = run(m, x.mode, x.draft, x.prompt, n);
    x.d = std::make_unique<SpecDecoder>(m, x.mode, x.draft, c.vocab_size, SamplingParams{.temperature = 0});
    x.s = m.new_session();
  }
  // Two of them draft mostly right (random-weight drafters almost never are), so that their
  // passes keep 0 .. draft rows side by side.
  for (int i : {0, 3}) ms[i].d->draft_override = oracle(ms[i].alone.tokens, c.vocab_size, i + 1);
  constexpr size_t kChunk = 32;
  for (int pass = 0;; ++pass) {
    std::vector<SessionStep> steps;
    std::vector<Member*> in;
    for (Member& x : ms) {
      if (pass < x.join_at || static_cast<int>(x.batched.tokens.size()) >= n) continue;
      if (x.fed < x.prompt.size())
        steps.push_back({&x.s, std::span<const int>(x.prompt).subspan(x.fed, std::min(kChunk, x.prompt.size() - x.fed))});
      else
        steps.push_back({&x.s, x.d->begin_step(x.s)});
      in.push_back(&x);
    }
    if (steps.empty()) break;
    ForwardTrace tr;
    tr.keep_layer_hidden = true;
    const std::vector<std::vector<float>> logits = m.forward(steps, nullptr, &tr);
    for (size_t i = 0, row0 = 0; i < in.size(); row0 += steps[i].tokens.size(), ++i) {
      Member& x = *in[i];
      if (x.fed < x.prompt.size()) {
        x.fed += steps[i].tokens.size();
        const int next = x.fed < x.prompt.size() ? x.prompt[x.fed] : -1;
        const int first = x.d->prefilled(x.s, steps[i].tokens, tr, static_cast<int>(row0), logits[i], next);
        if (first >= 0) x.batched = {{first}, {logits[i]}, {}};
        continue;
      }
      SpecDecoder::Chosen ch = x.d->end_step(x.s, tr, static_cast<int>(row0));
      for (size_t k = 0; k < ch.tokens.size(); ++k) {
        x.batched.tokens.push_back(ch.tokens[k]);
        x.batched.logits.push_back(std::move(ch.logits[k]));
      }
    }
  }
  for (size_t i = 0; i < ms.size(); ++i) {
    Member& x = ms[i];
    x.batched.tokens.resize(n);
    x.batched.logits.resize(n);
    expect_same(x.alone, x.batched, "batched member " + std::to_string(i));
  }
  EXPECT_GT(ms[0].d->stats().acceptance(), 0.3);
  EXPECT_GT(ms[3].d->stats().acceptance(), 0.3);
}

TEST(Speculative, BadSettingsAreRefused) {
  Model tiny(test::golden_dir("tiny")), dspark(test::golden_dir("tiny-dspark"));
  const int V = 1024;
  const SamplingParams greedy{.temperature = 0};
  auto refused = [](const std::function<void()>& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no error, expected one with '" << part << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused([&] { SpecDecoder(tiny, SpecMode::dspark, 1, V, greedy); }, "has no DSpark drafter");
  refused([&] { SpecDecoder(dspark, SpecMode::mtp, 1, V, greedy); }, "--spec dspark");
  refused([&] { SpecDecoder(dspark, SpecMode::dspark, 0, V, greedy); }, "--draft 0");
  refused([&] { SpecDecoder(dspark, SpecMode::dspark, 6, V, greedy); }, "proposes 1 .. 5");
  refused([&] { SpecDecoder(tiny, SpecMode::mtp, 5, V, greedy); }, "proposes 1 .. 4");
  refused([&] { parse_spec_mode("eagle"); }, "'eagle' is not one of off, mtp, dspark");
}

}  // namespace
}  // namespace dsv4
