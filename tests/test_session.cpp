// Sessions and the row-independence property of the kernels:
//  - decoding token by token gives exactly (bit for bit) the logits of a one-shot prefill of
//    the same tokens, and so does any chunking of the prefill;
//  - results do not depend on the thread count;
//  - two sessions of one model, interleaved, never see each other's tokens;
//  - batches: every session of a batched step gets the logits it gets alone (batch_mix.h),
//    for random mixes of sessions, prompts, chunk sizes and thread counts;
//  - the cache stores rows packed in act_quant mode (float32 without), gives them back bit for
//    bit, refuses rows that are not on the grid, and copies deeply.
// Metric: max-abs difference, tolerance 0 (the same computation in the same order).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "core/check.h"
#include "core/thread_pool.h"
#include "quant/act_quant.h"
#include "quant/formats.h"
#include "model/model.h"
#include "batch_mix.h"
#include "test_util.h"

namespace dsv4 {
namespace {

std::vector<int> some_tokens(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int> t(n);
  for (int& v : t) v = static_cast<int>(rng() % vocab);
  return t;
}

// Feeds tokens in chunks of the given sizes (cycled); returns the logits after the last one.
std::vector<float> run_chunked(const Model& m, std::span<const int> tokens, std::vector<int> chunks) {
  Session s = m.new_session();
  std::vector<float> logits;
  size_t i = 0, c = 0;
  while (i < tokens.size()) {
    const size_t len = std::min<size_t>(chunks[c++ % chunks.size()], tokens.size() - i);
    logits = m.forward(s, tokens.subspan(i, len));
    i += len;
  }
  return logits;
}

class SessionCase : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(SessionCase, DecodeAndChunksEqualOneShotPrefill) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  // Long enough to wrap the window ring and complete several compressed blocks.
  const int n = std::min(160, 3 * m.config().sliding_window + 40);
  const std::vector<int> tokens = some_tokens(n, m.config().vocab_size, 7);
  const std::vector<float> one_shot = run_chunked(m, tokens, {n});
  for (const std::vector<int>& chunks : std::vector<std::vector<int>>{{1}, {5, 1, 3}, {n / 2}, {4, 17}}) {
    const test::MaxErr e = test::max_abs_err(run_chunked(m, tokens, chunks), one_shot);
    EXPECT_EQ(e.err, 0.0) << name << " chunks starting " << chunks[0] << ": " << e.str();
  }
}

TEST_P(SessionCase, ThreadCountDoesNotChangeResults) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  const std::vector<int> tokens = some_tokens(40, m.config().vocab_size, 11);
  set_num_threads(1);
  const std::vector<float> one = run_chunked(m, tokens, {40});
  set_num_threads(2);
  const std::vector<float> two = run_chunked(m, tokens, {40});
  set_num_threads(3);
  const std::vector<float> three = run_chunked(m, tokens, {7});
  // Chunks smaller than the thread count: attention splits each token's heads over threads.
  const std::vector<float> three_small = run_chunked(m, tokens, {1, 2});
  set_num_threads(0);
  EXPECT_EQ(test::max_abs_err(two, one).err, 0.0) << test::max_abs_err(two, one).str();
  EXPECT_EQ(test::max_abs_err(three, one).err, 0.0) << test::max_abs_err(three, one).str();
  EXPECT_EQ(test::max_abs_err(three_small, one).err, 0.0) << test::max_abs_err(three_small, one).str();
}

TEST_P(SessionCase, InterleavedSessionsAreIndependent) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  const int V = m.config().vocab_size;
  const std::vector<int> a = some_tokens(30, V, 1), b = some_tokens(30, V, 2);
  const std::vector<float> want_a = run_chunked(m, a, {1}), want_b = run_chunked(m, b, {1});
  Session sa = m.new_session(), sb = m.new_session();
  std::vector<float> got_a, got_b;
  for (int i = 0; i < 30; ++i) {
    got_a = m.forward(sa, std::span<const int>(a).subspan(i, 1));
    got_b = m.forward(sb, std::span<const int>(b).subspan(i, 1));
  }
  EXPECT_EQ(test::max_abs_err(got_a, want_a).err, 0.0);
  EXPECT_EQ(test::max_abs_err(got_b, want_b).err, 0.0);
  EXPECT_GT(test::max_abs_err(got_a, got_b).err, 0.0);  // different text, different logits
}

TEST_P(SessionCase, BatchedSessionsGetTheirLogitsAlone) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  // Prompts long enough to wrap the window ring and complete compressed blocks; chunks from
  // one token (decode) to prefill chunks longer than a compression block.
  const int max_tokens = std::min(120, 2 * m.config().sliding_window + 40);
  // Two mixes per case under a sanitizer (.ci/sanitizers sets DSV4_SANITIZER) and on the AVX2
  // and scalar paths (ctest's _avx2 and _scalar runs): enough to run every path, at a third of
  // the CI time; the main run checks six.
  const unsigned seeds = test::short_rerun() ? 2 : 6;
  for (unsigned seed = 1; seed <= seeds; ++seed) {
    const test::MixReport r = test::check_random_mix(m, seed, 8, max_tokens, 20);
    EXPECT_EQ(r.mismatches, 0u) << name << ": " << r.first;
    EXPECT_GT(r.steps, 0);
  }
}

// Steps of decode-sized chunks only (1 .. 4 tokens per session): the batch runs each session's
// attention, compressors and indexer on one thread, sessions side by side (for_each_segment),
// rather than one session at a time over all threads; the logits stay those of the session alone.
TEST_P(SessionCase, BatchedDecodeStepsGetTheirLogitsAlone) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  const int max_tokens = std::min(120, 2 * m.config().sliding_window + 40);
  const unsigned seeds = test::short_rerun() ? 1 : 3;
  for (unsigned seed = 101; seed < 101 + seeds; ++seed) {
    const test::MixReport r = test::check_random_mix(m, seed, 8, max_tokens, 4);
    EXPECT_EQ(r.mismatches, 0u) << name << ": " << r.first;
    EXPECT_GT(r.steps, 0);
  }
}

// Speculative steps: a session marked, fed up to `window` tokens, then rolled back to a random
// kept prefix, continues bit for bit like a session that was fed only the kept tokens. Random
// steps over a prompt long enough to cross many compressed-block boundaries inside the dropped
// and the kept tokens and to wrap the window ring; every step compares the logits of what both
// sessions feed next.
TEST_P(SessionCase, RollbackEqualsFeedingOnlyTheKeptTokens) {
  const auto& [name, act_quant] = GetParam();
  Model m(test::golden_dir(name), ModelOptions{.act_quant = act_quant});
  const int V = m.config().vocab_size, win = m.config().sliding_window;
  const int n = std::min(300, 4 * win + 60);
  std::mt19937 rng(11);
  Session spec = m.new_session(), plain = m.new_session();
  int fed = 0, dropped = 0, steps = 0;
  while (fed < n) {
    const int k = 1 + static_cast<int>(rng() % std::min(win, 8));
    const std::vector<int> tried = some_tokens(k, V, rng());
    const SessionMark mark = m.mark(spec, k);
    m.forward(spec, tried);
    const int keep = static_cast<int>(rng() % (k + 1));
    m.rollback(spec, mark, spec.pos - k + keep);
    dropped += k - keep;
    ASSERT_EQ(spec.pos, plain.pos + keep);
    if (keep > 0) m.forward(plain, std::span<const int>(tried).first(keep));
    // The next tokens, fed to both.
    const std::vector<int> next = some_tokens(1 + static_cast<int>(rng() % 3), V, rng());
    const test::MaxErr e = test::max_abs_err(m.forward(spec, next), m.forward(plain, next));
    ASSERT_EQ(e.err, 0.0) << name << " step " << steps << " at position " << plain.pos << ": " << e.str();
    fed += keep + static_cast<int>(next.size());
    ++steps;
  }
  EXPECT_GT(dropped, n / 4);
}

TEST(Session, RollbackIsChecked) {
  Model m(test::golden_dir("tiny-short"));
  Session s = m.new_session();
  EXPECT_THROW(m.mark(s, 0), Error);
  EXPECT_THROW(m.mark(s, m.config().sliding_window + 1), Error);
  const SessionMark mark = m.mark(s, 2);
  m.forward(s, std::vector<int>{1, 2, 3});
  EXPECT_THROW(m.rollback(s, mark, 1), Error);  // went past the mark's 2 tokens
}

TEST(Session, BatchStepsAreCheckedBeforeAnySessionMoves) {
  Model m(test::golden_dir("tiny"));
  Session a = m.new_session(), b = m.new_session();
  const std::vector<int> ok = {1, 2, 3}, bad = {1, m.config().vocab_size};
  std::vector<SessionStep> steps = {{&a, ok}, {&b, bad}};
  EXPECT_THROW(m.forward(steps), Error);
  EXPECT_EQ(a.pos, 0);
  steps = {{&a, ok}, {&a, ok}};
  EXPECT_THROW(m.forward(steps), Error);
  steps = {};
  EXPECT_THROW(m.forward(steps), Error);
  EXPECT_EQ(a.pos, 0);
}

INSTANTIATE_TEST_SUITE_P(
    AllCases, SessionCase,
    ::testing::Combine(::testing::Values("tiny", "tiny-long", "tiny-fp8", "tiny-short"), ::testing::Bool()),
    [](const auto& info) {
      std::string n = std::get<0>(info.param) + (std::get<1>(info.param) ? "_act_quant" : "_smooth");
      for (char& c : n)
        if (c == '-') c = '_';
      return n;
    });

TEST(Session, MtpDecodeEqualsMtpPrefill) {
  // The MTP layer keeps its own caches: feeding positions one at a time equals one batch.
  Model m(test::golden_dir("tiny"));
  const std::vector<int> tokens = some_tokens(30, m.config().vocab_size, 5);
  Session s = m.new_session();
  ForwardTrace tr;
  m.forward(s, std::span<const int>(tokens).first(29), &tr);
  Session a = s, b = s;
  const std::span<const int> next = std::span<const int>(tokens).subspan(1, 29);
  const std::vector<float> batch = m.mtp_forward(a, tr.final_stream, next);
  const size_t flat = static_cast<size_t>(m.config().hc_mult) * m.config().hidden_size;
  std::vector<float> step;
  for (int i = 0; i < 29; ++i)
    step = m.mtp_forward(b, std::span<const float>(tr.final_stream).subspan(i * flat, flat), next.subspan(i, 1));
  EXPECT_EQ(test::max_abs_err(step, batch).err, 0.0);
}

TEST(KvCache, PackedRowsLoadBitForBitAndRefuseOffGridRows) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  const int D = 192, rd = 64;
  KvRows kv(KvFormat::fp8_nope, D, rd), idx(KvFormat::fp4, 128, 0), f(KvFormat::f32, D, rd);
  std::vector<std::vector<float>> rows, keys;
  for (int r = 0; r < 20; ++r) {
    std::vector<float> x(D), k(128);
    for (float& v : x) v = nd(rng) * (r + 1);
    for (float& v : k) v = nd(rng) / (r + 1);
    fp8_roundtrip(std::span<float>(x).first(D - rd), 64);  // the rope dims stay arbitrary floats
    fp4_roundtrip(k, 32);
    kv.push_back(x);
    idx.push_back(k);
    f.push_back(x);
    rows.push_back(x);
    keys.push_back(k);
  }
  const KvRows copy = kv;
  kv.store(0, rows[1]);  // the copy keeps its own rows
  std::vector<float> got(D), key(128);
  for (int r = 0; r < 20; ++r) {
    copy.load(r, got.data());
    for (int d = 0; d < D; ++d) ASSERT_EQ(f32_to_bits(got[d]), f32_to_bits(rows[r][d])) << "row " << r << " dim " << d;
    idx.load(r, key.data());
    for (int d = 0; d < 128; ++d) ASSERT_EQ(f32_to_bits(key[d]), f32_to_bits(keys[r][d])) << "key " << r << " dim " << d;
  }
  kv.load(0, got.data());
  EXPECT_EQ(test::max_abs_err(got, rows[1]).err, 0.0);
  EXPECT_EQ(kv.bytes(), 20u * (128 + 2 + 4 * 64));
  EXPECT_EQ(idx.bytes(), 20u * (64 + 4));
  EXPECT_EQ(f.bytes(), 20u * 4 * D);
  // A row that was not rounded (a --no-act-quant row) is refused and leaves the rows as they were.
  std::vector<float> raw(D);
  for (float& v : raw) v = nd(rng);
  EXPECT_THROW(kv.push_back(raw), Error);
  EXPECT_EQ(kv.size(), 20u);
  EXPECT_THROW(idx.push_back(std::span<const float>(raw).first(128)), Error);
  f.push_back(raw);  // float32 rows take anything
  f.load(20, got.data());
  EXPECT_EQ(test::max_abs_err(got, raw).err, 0.0);
}

TEST(KvCache, SessionsStorePackedRowsOnlyWithRounding) {
  for (bool act_quant : {true, false}) {
    Model m(test::golden_dir("tiny"), ModelOptions{.act_quant = act_quant});
    Session s = m.new_session();
    m.forward(s, some_tokens(40, m.config().vocab_size, 3));
    const LayerCache& csa = s.layers[1];  // tiny: SWA CSA HCA CSA
    EXPECT_EQ(csa.window.format(), act_quant ? KvFormat::fp8_nope : KvFormat::f32);
    EXPECT_EQ(csa.compressor.entries.format(), act_quant ? KvFormat::fp8_nope : KvFormat::f32);
    EXPECT_EQ(csa.indexer.entries.format(), act_quant ? KvFormat::fp4 : KvFormat::f32);
    EXPECT_EQ(csa.compressor.entries.size(), 10u);  // 40 tokens / ratio 4
    const int D = m.config().head_dim, rd = m.config().qk_rope_head_dim;
    EXPECT_EQ(csa.compressor.entries.bytes(),
              10u * static_cast<size_t>(KvRows::row_bytes(csa.compressor.entries.format(), D, rd)));
  }
}

}  // namespace
}  // namespace dsv4
