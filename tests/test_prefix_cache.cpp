// The prefix cache (runtime/prefix_cache.h): where snapshots are kept, the RAM budget and its
// evictions, and above all that a conversation starting from a cached prefix computes bit for
// bit what a cold prefill of its whole prompt computes, for prefixes ending anywhere relative
// to the compression boundaries (tiny: ratios 4 and 16; small: 4 and 128, whose window of 128
// wraps), then while decoding after it; and through Generation (the server's path) with the
// same text and cached_tokens reported.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>

#include "ckpt/synth.h"
#include "core/check.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "runtime/engine.h"
#include "runtime/prefix_cache.h"
#include "runtime/scheduler.h"
#include "test_util.h"

namespace dsv4 {
namespace {

Engine& engine(const std::string& preset) {
  static std::map<std::string, std::pair<std::unique_ptr<test::TempDir>, std::unique_ptr<Engine>>> engines;
  auto& slot = engines[preset];
  if (!slot.second) {
    slot.first = std::make_unique<test::TempDir>();
    write_synthetic_checkpoint(slot.first->path(), synth_preset(preset), 11);
    slot.second = std::make_unique<Engine>(slot.first->path());
  }
  return *slot.second;
}

std::vector<int> random_tokens(const Engine& e, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, e.tokenizer().vocab_size() - 1);
  std::vector<int> t(n);
  for (int& x : t) x = id(rng);
  return t;
}

TEST(PrefixCache, KeepsStrideMultiplesAndThePromptsLastBoundary) {
  const PrefixCache c(1 << 20, 128);
  EXPECT_EQ(c.stride(), 1024);
  EXPECT_FALSE(c.wanted(0, 5000));
  EXPECT_FALSE(c.wanted(128, 5000));
  EXPECT_TRUE(c.wanted(1024, 5000));
  EXPECT_TRUE(c.wanted(4096, 5000));
  EXPECT_TRUE(c.wanted(4992, 5000));  // the last boundary
  EXPECT_FALSE(c.wanted(4993, 5000));
  EXPECT_FALSE(c.wanted(5120, 5000));  // past the prompt
  EXPECT_EQ(c.next_wanted(0, 5000), 1024u);
  EXPECT_EQ(c.next_wanted(4096, 5000), 4992u);
  EXPECT_EQ(c.next_wanted(4992, 5000), 0u);
  EXPECT_EQ(c.next_wanted(0, 100), 0u);
}

TEST(PrefixCache, UnitIsTheRatiosMultipleOfAtLeastSixteen) {
  ModelConfig c;
  c.compress_ratios = {0, 4, 128, 4, 0};
  EXPECT_EQ(PrefixCache::snapshot_unit(c), 128);
  c.compress_ratios = {0, 4, 8, 4};
  EXPECT_EQ(PrefixCache::snapshot_unit(c), 16);
  c.compress_ratios = {0, 0};
  EXPECT_EQ(PrefixCache::snapshot_unit(c), 16);
  c.compress_ratios = {0, 4, 24};
  EXPECT_EQ(PrefixCache::snapshot_unit(c), 24);
}

TEST(PrefixCache, BadSettingsAndSnapshotsAreRefused) {
  EXPECT_THROW(PrefixCache(0, 16), Error);
  EXPECT_THROW(PrefixCache(1 << 20, 0), Error);
  const Engine& e = engine("tiny");
  PrefixCache c(1 << 20, 16);
  Session s = e.model().new_session();
  const std::vector<int> t = random_tokens(e, 20, 1);
  e.model().forward(s, std::span<const int>(t).first(20));
  EXPECT_THROW(c.store(t, s), Error);  // 20 tokens: not at a boundary
}

// Conversations starting from the cache against a cold prefill of the whole prompt, then a few
// decode steps after it: the same logits, bit for bit.
class PrefixCacheBitwise : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefixCacheBitwise, RestoredPrefixesEqualAColdPrefill) {
  Engine& e = engine(GetParam());
  const int u = PrefixCache::snapshot_unit(e.model().config());
  const std::vector<int> base = random_tokens(e, 4 * u + 8, 5);
  // Every case on tiny (u = 16); on small (u = 128, 8 layers of 512) the ones just past a
  // boundary, 1 and 3 mod 4, to keep the sanitizer run short.
  const bool all = u <= 16;
  const std::vector<int> firsts = all ? std::vector<int>{u - 1, u, u + 1, u + 3, 2 * u - 1, 2 * u, 2 * u + 1, 2 * u + 3, 3 * u + 2}
                                      : std::vector<int>{u - 1, u + 1, u + 3, 2 * u + 1};
  const std::vector<int> extras = all ? std::vector<int>{1, 3, u + 1} : std::vector<int>{1, u + 1};
  int hits = 0;
  for (const int la : firsts) {
    for (const int extra : extras) {
      const int lb = la + extra;
      if (lb + 3 > static_cast<int>(base.size())) continue;
      SCOPED_TRACE("first prompt " + std::to_string(la) + " tokens, second " + std::to_string(lb));
      e.enable_prefix_cache(64 << 20);  // empty for each case
      const std::vector<int> a(base.begin(), base.begin() + la), b(base.begin(), base.begin() + lb);
      Conversation first(e);
      first.prefill(a);
      EXPECT_EQ(first.last_reused(), 0u);

      Conversation second(e);
      const std::vector<float> got = second.prefill(b);
      const size_t want_reused = static_cast<size_t>(la / u * u);
      EXPECT_EQ(second.last_reused(), want_reused);
      hits += want_reused > 0;

      Session cold = e.model().new_session();
      const std::vector<float> want = e.model().forward(cold, b);
      ASSERT_EQ(test::max_abs_err(got, want).err, 0.0);
      for (int i = 0; i < 3; ++i) {  // decoding after it
        const std::span<const int> next(base.data() + lb + i, 1);
        ASSERT_EQ(test::max_abs_err(second.feed(next), e.model().forward(cold, next)).err, 0.0) << "decode step " << i;
      }
    }
  }
  EXPECT_GE(hits, all ? 20 : 6);
}

INSTANTIATE_TEST_SUITE_P(Presets, PrefixCacheBitwise, ::testing::Values("tiny", "small"));

TEST(PrefixCache, PromptsSharingAHeadFindItAtAStride) {
  // Two prompts sharing their first 1100 tokens, then differing: the second starts from the
  // first's snapshot at 1024 (a stride multiple), not its last boundary (which it does not share).
  Engine& e = engine("tiny");
  e.enable_prefix_cache(64 << 20);
  std::vector<int> a = random_tokens(e, 1200, 7), b = a;
  for (size_t i = 1100; i < b.size(); ++i) b[i] = (b[i] + 1) % e.tokenizer().vocab_size();
  Conversation c1(e), c2(e);
  c1.prefill(a);
  const std::vector<float> got = c2.prefill(b);
  EXPECT_EQ(c2.last_reused(), 1024u);
  Session cold = e.model().new_session();
  EXPECT_EQ(test::max_abs_err(got, e.model().forward(cold, b)).err, 0.0);
  const PrefixCacheStats s = e.prefix_cache()->stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.tokens_reused, 1024);
}

TEST(PrefixCache, TheBudgetEvictsTheLeastRecentlyUsed) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  // Measure one snapshot, then allow two of that size.
  e.enable_prefix_cache(64 << 20);
  const std::vector<int> p1 = random_tokens(e, u + 1, 21), p2 = random_tokens(e, u + 1, 22),
                         p3 = random_tokens(e, u + 1, 23);
  Conversation(e).prefill(p1);
  const size_t one = e.prefix_cache()->stats().bytes;
  ASSERT_GT(one, 0u);
  e.enable_prefix_cache(2 * one + one / 2);
  Conversation(e).prefill(p1);
  Conversation(e).prefill(p2);
  {
    std::vector<int> again = p1;  // p1 used again: p2 is now the least recently used
    again.push_back(3);
    Conversation c(e);
    c.prefill(again);
    EXPECT_EQ(c.last_reused(), static_cast<size_t>(u));
  }
  Conversation(e).prefill(p3);  // evicts p2
  PrefixCacheStats s = e.prefix_cache()->stats();
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_LE(s.bytes, s.budget);
  std::vector<int> p2b = p2, p1b = p1;
  p2b.push_back(1);
  p1b.push_back(1);
  Conversation c1(e), c2(e);
  c1.prefill(p1b);
  EXPECT_EQ(c1.last_reused(), static_cast<size_t>(u));
  c2.prefill(p2b);
  EXPECT_EQ(c2.last_reused(), 0u);  // evicted
  // A snapshot larger than the whole budget is not kept (and evicts nothing).
  e.enable_prefix_cache(one / 2);
  Conversation(e).prefill(p1);
  s = e.prefix_cache()->stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.evictions, 0);
}

TEST(PrefixCache, GenerationsReportCachedTokensAndGenerateTheSame) {
  // The server's path (Generation, a chunk at a time): a second request resending the first
  // one's prompt with more after it starts from the cache and generates what it does cold.
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  const std::vector<int> head = random_tokens(e, 3 * u + 5, 31);
  std::vector<int> longer = head;
  for (int t : random_tokens(e, 9, 32)) longer.push_back(t);
  const auto request = [](const std::vector<int>& prompt) {
    GenerateRequest r;
    r.prompt = prompt;
    r.sampling.temperature = 0;
    r.max_tokens = 12;
    r.stop_at_eos = false;
    return r;
  };
  e.enable_prefix_cache(0);
  Conversation cold(e);
  const GenerateResult want = generate(cold, request(longer));
  EXPECT_EQ(want.reused_tokens, 0);

  e.enable_prefix_cache(64 << 20);
  Conversation c1(e), c2(e);
  generate(c1, request(head));
  const GenerateResult got = generate(c2, request(longer));
  EXPECT_EQ(got.reused_tokens, 3 * u);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.text, want.text);
}

// The disk tier: a restarted cache finds the snapshots written before and restores them bit
// for bit; bad files are reported and skipped, and the prompt is prefilled cold instead.
std::vector<std::filesystem::path> snapshot_files(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(dir))
    if (f.path().extension() == ".dsv4snap") files.push_back(f.path());
  return files;
}

TEST(PrefixCacheDisk, SnapshotsSurviveARestart) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  test::TempDir dir;
  const std::vector<int> a = random_tokens(e, 2 * u + 3, 51);
  std::vector<int> b = a;
  for (int t : random_tokens(e, 5, 52)) b.push_back(t);
  e.enable_prefix_cache(64 << 20, dir.path(), 64 << 20);
  Conversation(e).prefill(a);
  e.prefix_cache()->flush();
  ASSERT_EQ(snapshot_files(dir.path()).size(), 1u);
  EXPECT_EQ(e.prefix_cache()->stats().disk_written, 1);

  // What a process killed while writing leaves: a temporary file, never renamed into place.
  const std::string name = snapshot_files(dir.path()).at(0).filename().string();
  const std::string tmp = dir.path() + "/.tmp-" + name.substr(0, 17) + "00000000deadbeef";
  write_file(tmp, read_file(snapshot_files(dir.path()).at(0).string()).substr(0, 100));
  e.enable_prefix_cache(64 << 20, dir.path(), 64 << 20);  // a restart: RAM empty, the disk found
  EXPECT_EQ(e.prefix_cache()->stats().disk_entries, 1u);
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_EQ(e.prefix_cache()->stats().disk_bad, 0);
  Conversation c(e);
  const std::vector<float> got = c.prefill(b);
  EXPECT_EQ(c.last_reused(), static_cast<size_t>(2 * u));
  Session cold = e.model().new_session();
  EXPECT_EQ(test::max_abs_err(got, e.model().forward(cold, b)).err, 0.0);
  const PrefixCacheStats s = e.prefix_cache()->stats();
  EXPECT_EQ(s.disk_hits, 1);
  EXPECT_EQ(s.entries, 1u);  // now in RAM too
  e.enable_prefix_cache(0);
}

TEST(PrefixCacheDisk, BadFilesAreReportedAndSkipped) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  test::TempDir dir;
  const std::vector<int> a = random_tokens(e, u + 2, 61);
  std::vector<int> b = a;
  b.push_back(5);
  e.enable_prefix_cache(64 << 20, dir.path(), 64 << 20);
  Conversation(e).prefill(a);
  e.prefix_cache()->flush();
  const std::filesystem::path file = snapshot_files(dir.path()).at(0);
  const std::string good = read_file(file.string());
  Session cold = e.model().new_session();
  const std::vector<float> want = e.model().forward(cold, b);

  struct Fault {
    const char* name;
    std::function<std::string(std::string)> spoil;
  };
  const std::vector<Fault> faults = {
      {"truncated", [](std::string s) { return s.substr(0, s.size() - 7); }},
      {"header only", [](std::string s) { return s.substr(0, kSnapshotHeaderBytes); }},
      {"bit flipped", [](std::string s) { s[s.size() / 2] ^= 0x10; return s; }},
      {"older version", [](std::string s) { s[8] = 0; return s; }},
      {"another checkpoint", [](std::string s) { s[16] ^= 1; return s; }},
      {"not a snapshot", [](std::string s) { s[0] = 'X'; return s; }},
      {"empty", [](std::string) { return std::string(); }},
  };
  for (const Fault& f : faults) {
    SCOPED_TRACE(f.name);
    write_file(file.string(), f.spoil(good));
    e.enable_prefix_cache(64 << 20, dir.path(), 64 << 20);
    Conversation c(e);
    const std::vector<float> got = c.prefill(b);
    EXPECT_EQ(c.last_reused(), 0u);  // cold
    EXPECT_EQ(test::max_abs_err(got, want).err, 0.0);
    EXPECT_EQ(e.prefix_cache()->stats().disk_bad, 1);
    EXPECT_EQ(e.prefix_cache()->stats().disk_hits, 0);
    e.prefix_cache()->flush();  // the cold prefill's own snapshot, written again
    EXPECT_EQ(read_file(file.string()), good) << "the bad file was removed, then written anew";
    e.enable_prefix_cache(0);
  }
  // The good file again is used.
  write_file(file.string(), good);
  e.enable_prefix_cache(64 << 20, dir.path(), 64 << 20);
  Conversation c(e);
  c.prefill(b);
  EXPECT_EQ(c.last_reused(), static_cast<size_t>(u));
  e.enable_prefix_cache(0);
}

TEST(PrefixCacheDisk, TheDiskBudgetEvictsFiles) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  test::TempDir dir;
  e.enable_prefix_cache(64 << 20, dir.path(), 64 << 20);
  Conversation(e).prefill(random_tokens(e, u + 1, 71));
  e.prefix_cache()->flush();
  const size_t one = e.prefix_cache()->stats().disk_bytes;
  e.enable_prefix_cache(64 << 20, dir.path(), 2 * one + one / 2);
  for (uint32_t seed = 72; seed < 76; ++seed) {
    Conversation(e).prefill(random_tokens(e, u + 1, seed));
    e.prefix_cache()->flush();
    size_t on_disk = 0;
    for (const auto& f : snapshot_files(dir.path())) on_disk += std::filesystem::file_size(f);
    EXPECT_LE(on_disk, 2 * one + one / 2);
  }
  const PrefixCacheStats s = e.prefix_cache()->stats();
  EXPECT_EQ(s.disk_written, 4);
  EXPECT_EQ(s.disk_evictions, 3);
  EXPECT_EQ(s.disk_entries, 2u);
  EXPECT_LE(s.disk_bytes, s.disk_budget);
  EXPECT_EQ(snapshot_files(dir.path()).size(), 2u);
  // A snapshot larger than the whole disk budget is kept in RAM only.
  test::TempDir small;
  e.enable_prefix_cache(64 << 20, small.path(), one / 2);
  Conversation(e).prefill(random_tokens(e, u + 1, 77));
  e.prefix_cache()->flush();
  EXPECT_EQ(e.prefix_cache()->stats().disk_written, 0);
  EXPECT_EQ(e.prefix_cache()->stats().entries, 1u);
  EXPECT_TRUE(snapshot_files(small.path()).empty());
  e.enable_prefix_cache(0);
}

TEST(PrefixCacheDisk, AnUnusableDirectoryLeavesTheCacheInRam) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  test::TempDir dir;
  const std::string file = dir.path() + "/plain-file";
  write_file(file, "x");
  std::vector<std::string> warnings;
  PrefixCache c(64 << 20, u);
  EXPECT_FALSE(c.attach_disk(file + "/sub", 64 << 20, e.model(), e.snapshot_fingerprint(),
                            [&](const std::string& w) { warnings.push_back(w); }));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("snapshots stay in RAM"), std::string::npos) << warnings[0];
  Session s = e.model().new_session();
  const std::vector<int> t = random_tokens(e, u + 1, 91);
  e.model().forward(s, std::span<const int>(t).first(u));
  c.store(t, s);
  c.flush();
  Session back = e.model().new_session();
  EXPECT_EQ(c.restore(t, 0, back), static_cast<size_t>(u));
  EXPECT_EQ(c.stats().disk_budget, 0u);
  EXPECT_EQ(c.stats().disk_written, 0);
  // Through the engine (serve, chat, run): the same, never an error.
  EXPECT_NO_THROW(e.enable_prefix_cache(64 << 20, file, 64 << 20));
  ASSERT_NE(e.prefix_cache(), nullptr);
  EXPECT_THROW(e.enable_prefix_cache(0, dir.path(), 64 << 20), Error);  // a disk tier needs RAM
  e.enable_prefix_cache(0);
}

// A write that fails (here a file-size limit, as a full disk fails it): one warning, no more
// writes, no file left behind, and the RAM tier goes on.
TEST(PrefixCacheDisk, AFullDiskLeavesTheCacheInRam) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  test::TempDir dir;
  std::vector<std::string> warnings;
  PrefixCache c(64 << 20, u);
  ASSERT_TRUE(c.attach_disk(dir.path(), 64 << 20, e.model(), e.snapshot_fingerprint(),
                            [&](const std::string& w) { warnings.push_back(w); }));
  struct FileSizeLimit {  // RLIMIT_FSIZE for this process while the test runs; SIGXFSZ ignored
    rlimit old{};
    void (*old_handler)(int);
    FileSizeLimit() {
      getrlimit(RLIMIT_FSIZE, &old);
      old_handler = std::signal(SIGXFSZ, SIG_IGN);
      rlimit small = old;
      small.rlim_cur = 4096;
      setrlimit(RLIMIT_FSIZE, &small);
    }
    ~FileSizeLimit() {
      setrlimit(RLIMIT_FSIZE, &old);
      std::signal(SIGXFSZ, old_handler);
    }
  };
  std::vector<std::vector<int>> prompts;
  {
    const FileSizeLimit limit;
    for (uint32_t seed = 92; seed < 95; ++seed) {
      prompts.push_back(random_tokens(e, u + 1, seed));
      Session s = e.model().new_session();
      e.model().forward(s, std::span<const int>(prompts.back()).first(u));
      c.store(prompts.back(), s);
    }
    c.flush();
  }
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("snapshots stay in RAM from now on"), std::string::npos) << warnings[0];
  EXPECT_EQ(c.stats().disk_written, 0);
  EXPECT_EQ(c.stats().disk_bytes, 0u);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // the cut temporary file removed
  for (const auto& p : prompts) {
    Session back = e.model().new_session();
    EXPECT_EQ(c.restore(p, 0, back), static_cast<size_t>(u));
  }
}

// Batched: the scheduler's generations start from the cache in the same steps as others run,
// drafting or not, sampled or greedy, and each generates what it generates cold and alone.
TEST(PrefixCacheBatched, ScheduledGenerationsFromTheCacheGetWhatTheyGetCold) {
  Engine& e = engine("tiny");
  const int u = PrefixCache::snapshot_unit(e.model().config());
  const std::vector<int> head = random_tokens(e, 5 * u + 3, 81);
  std::vector<GenerateRequest> reqs;
  for (int k = 0; k < 4; ++k) {
    GenerateRequest r;
    r.prompt = head;
    for (int t : random_tokens(e, 3 + 5 * k, 82 + k)) r.prompt.push_back(t);
    r.sampling.temperature = k % 2 ? 0.9f : 0.0f;
    r.sampling.seed = 7 + k;
    r.max_tokens = 20;
    r.stop_at_eos = false;
    r.spec = k < 2 ? SpecMode::mtp : SpecMode::off;
    r.draft = k < 2 ? 2 : 0;
    reqs.push_back(r);
  }
  e.enable_prefix_cache(0);
  std::vector<GenerateResult> cold;
  for (const GenerateRequest& r : reqs) {
    Conversation c(e);
    cold.push_back(generate(c, r));
  }
  e.enable_prefix_cache(64 << 20);
  {
    Scheduler warmup(e, 2, 0, 64);  // the head, in each drafting mode
    for (int k : {0, 2}) {
      GenerateRequest r = reqs[k];
      r.prompt = head;
      r.max_tokens = 1;
      test::result_of(*warmup.submit(r));
    }
  }
  Scheduler sched(e, 4, 0, 24);  // small steps: prefill chunks and decodes share them
  std::vector<std::shared_ptr<Job>> jobs;
  for (const GenerateRequest& r : reqs) jobs.push_back(sched.submit(r));
  for (size_t k = 0; k < jobs.size(); ++k) {
    const GenerateResult got = test::result_of(*jobs[k]);
    EXPECT_EQ(got.tokens, cold[k].tokens) << "request " << k;
    EXPECT_EQ(got.spec.accepted, cold[k].spec.accepted) << "request " << k;
    EXPECT_GE(got.reused_tokens, 4 * u) << "request " << k;
  }
  e.enable_prefix_cache(0);
}

// Speculative generations keep and restore their drafter's context with the session: a warm
// request generates the same tokens as cold, greedy and sampled, with the same drafts accepted.
struct SpecCase {
  std::string preset;
  SpecMode mode;
  float temperature;
};

class PrefixCacheSpec : public ::testing::TestWithParam<SpecCase> {};

TEST_P(PrefixCacheSpec, WarmDraftsAndGeneratesWhatColdDoes) {
  const SpecCase& p = GetParam();
  Engine& e = engine(p.preset);
  const int u = PrefixCache::snapshot_unit(e.model().config());
  for (const int head_len : {2 * u, 2 * u + 1, 3 * u - 1}) {
    SCOPED_TRACE("head of " + std::to_string(head_len) + " tokens");
    const std::vector<int> head = random_tokens(e, head_len, 41 + head_len);
    std::vector<int> longer = head;
    for (int t : random_tokens(e, 7, 42)) longer.push_back(t);
    const auto request = [&](const std::vector<int>& prompt) {
      GenerateRequest r;
      r.prompt = prompt;
      r.sampling.temperature = p.temperature;
      r.sampling.seed = 9;
      r.max_tokens = 24;
      r.stop_at_eos = false;
      r.spec = p.mode;
      r.draft = default_draft(e.model().config(), p.mode);
      return r;
    };
    e.enable_prefix_cache(0);
    Conversation cold(e);
    const GenerateResult want = generate(cold, request(longer));

    e.enable_prefix_cache(64 << 20);
    Conversation c1(e), c2(e);
    generate(c1, request(head));
    const GenerateResult got = generate(c2, request(longer));
    // The head's snapshot: its last boundary with the next token known (MTP), or its last.
    const int at = (p.mode == SpecMode::mtp ? head_len - 1 : head_len) / u * u;
    EXPECT_EQ(got.reused_tokens, at);
    EXPECT_EQ(got.tokens, want.tokens);
    EXPECT_EQ(got.spec.drafted, want.spec.drafted);
    EXPECT_EQ(got.spec.accepted, want.spec.accepted);
    // Sampled, the drafts' distributions decide what is kept and drawn: a drafter context
    // restored wrong would change the tokens (greedy random-weight MTP accepts none).
    if (p.temperature > 0) EXPECT_GT(got.spec.accepted, 0);
    // A conversation without drafting does not take a drafter's snapshot, nor the reverse.
    GenerateRequest plain = request(longer);
    plain.spec = SpecMode::off;
    Conversation c3(e);
    EXPECT_EQ(generate(c3, plain).reused_tokens, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Drafters, PrefixCacheSpec,
                         ::testing::Values(SpecCase{"tiny", SpecMode::mtp, 0.0f}, SpecCase{"tiny", SpecMode::mtp, 1.0f},
                                           SpecCase{"tiny-dspark", SpecMode::dspark, 0.0f},
                                           SpecCase{"tiny-dspark", SpecMode::dspark, 1.0f}));

}  // namespace
}  // namespace dsv4
