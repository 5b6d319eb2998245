// The runtime on a synthetic model written by dsv4 synth: sampling (greedy, seeded
// reproducibility, filters), the generation loop (max tokens, EOS, stop strings held back
// while streaming, the forced-text hook, cancellation, penalties and logit_bias against a plain
// loop that applies them by hand), conversation cache reuse equal to a
// fresh prefill, and conversations isolated from each other; the scheduler's continuous
// batching never lets a long prefill stall a decoding stream, and batches speculative
// generations (greedy and sampled) without changing what they generate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/check.h"
#include <filesystem>

#include "ckpt/synth.h"
#include "runtime/chat_prompt.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "test_util.h"

namespace dsv4 {
namespace {

const Engine& engine() {
  static test::TempDir dir;
  static const Engine e = [] {
    write_synthetic_checkpoint(dir.path(), synth_preset("tiny"), 7);
    return Engine(dir.path());
  }();
  return e;
}

// The chat format comes from the checkpoint's bundled encoder when it has one (0731's defines
// REASONING_EFFORT_PROMPTS), else April; think low renders as think high with the April encoder.
TEST(Engine, ChatFormatFollowsTheBundledEncoder) {
  EXPECT_EQ(engine().chat_format(), chat::ChatFormat::april);
  test::TempDir dir;
  write_synthetic_checkpoint(dir.path(), synth_preset("tiny"), 7);
  std::filesystem::create_directories(dir.file("encoding"));
  test::write_file(dir.file("encoding/encoding_dsv4.py"),
                   "REASONING_EFFORT_PROMPTS = {\"low\": \"\"}\nDEFAULT_REASONING_EFFORT = \"low\"\n");
  const Engine e0731(dir.path());
  EXPECT_EQ(e0731.chat_format(), chat::ChatFormat::v0731);
  const nlohmann::ordered_json m = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(render_chat(m, nullptr, ReasoningMode::think_low), render_chat(m, nullptr, ReasoningMode::think_high));
  EXPECT_NE(render_chat(m, nullptr, ReasoningMode::think_low, chat::ChatFormat::v0731),
            render_chat(m, nullptr, ReasoningMode::think_high, chat::ChatFormat::v0731));
  EXPECT_NE(chat_prompt_tokens(e0731, m, nullptr, ReasoningMode::think_high),
            chat_prompt_tokens(engine(), m, nullptr, ReasoningMode::think_high));
  test::write_file(dir.file("encoding/encoding_dsv4.py"), "REASONING_EFFORT_MAX = \"...\"\n");
  EXPECT_EQ(Engine(dir.path()).chat_format(), chat::ChatFormat::april);
}

TEST(Sampler, GreedyAndFilters) {
  const std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 2.0f};
  Sampler greedy({.temperature = 0});
  EXPECT_EQ(greedy.sample(logits), 1);  // ties -> lower id
  Sampler top1({.temperature = 1, .top_k = 1, .seed = 3});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(top1.sample(logits), 1);
  Sampler nucleus({.temperature = 1, .top_p = 0.3f, .seed = 3});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(nucleus.sample(logits), 1);
  Sampler minp({.temperature = 1, .min_p = 0.8f, .seed = 5});
  for (int i = 0; i < 50; ++i) {
    const int t = minp.sample(logits);
    EXPECT_TRUE(t == 1 || t == 2 || t == 4) << t;  // only tokens within 0.8x of the best survive
  }
}

TEST(Sampler, SeedReproducesAndDistributionFollowsSoftmax) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = 1/4, 3/4
  Sampler a({.seed = 42}), b({.seed = 42});
  std::map<int, int> count;
  for (int i = 0; i < 4000; ++i) {
    const int x = a.sample(logits);
    EXPECT_EQ(x, b.sample(logits));
    count[x]++;
  }
  // Metric: frequency of token 1; tolerance 0.03 (about 4.4 standard deviations at n = 4000).
  EXPECT_NEAR(count[1] / 4000.0, 0.75, 0.03);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler({.temperature = -1}), Error);
  EXPECT_THROW(Sampler({.top_p = 0}), Error);
  EXPECT_THROW(Sampler({.top_k = -2}), Error);
  EXPECT_THROW(Sampler({.min_p = 1}), Error);
}

GenerateRequest request(const std::string& prompt, uint64_t seed, int max_tokens) {
  GenerateRequest r;
  r.prompt = engine().tokenizer().encode(prompt);
  r.sampling.seed = seed;
  r.max_tokens = max_tokens;
  r.stop_at_eos = false;
  return r;
}

TEST(Generate, SameSeedSameTextAndMaxTokens) {
  Conversation a(engine()), b(engine()), c(engine());
  const GenerateResult ra = generate(a, request("Hello there", 9, 12));
  const GenerateResult rb = generate(b, request("Hello there", 9, 12));
  const GenerateResult rc = generate(c, request("Hello there", 10, 12));
  EXPECT_EQ(ra.tokens, rb.tokens);
  EXPECT_EQ(ra.text, rb.text);
  EXPECT_NE(ra.tokens, rc.tokens);
  EXPECT_EQ(ra.tokens.size(), 12u);
  EXPECT_EQ(ra.finish, FinishReason::length);
}

TEST(Generate, ForcedTextStopsAtEosAndStreamsEverything) {
  Conversation conv(engine());
  GenerateRequest r = request("Q", 1, 100);
  r.stop_at_eos = true;
  r.forced_text = "The answer is 42. 😀 Done.";
  std::string streamed;
  r.on_text = [&](const std::string& d) {
    streamed += d;
    return true;
  };
  const GenerateResult g = generate(conv, r);
  EXPECT_EQ(g.text, *r.forced_text);
  EXPECT_EQ(streamed, g.text);
  EXPECT_EQ(g.finish, FinishReason::stop);
}

TEST(Generate, StopStringIsCutAndNeverStreamed) {
  Conversation conv(engine());
  GenerateRequest r = request("Q", 1, 100);
  r.forced_text = "alpha beta STOP gamma";
  r.stop = {"STOP", "never"};
  std::string streamed;
  r.on_text = [&](const std::string& d) {
    streamed += d;
    return true;
  };
  const GenerateResult g = generate(conv, r);
  EXPECT_EQ(g.text, "alpha beta ");
  EXPECT_EQ(streamed, "alpha beta ");
  EXPECT_EQ(g.finish, FinishReason::stop);
}

TEST(Generate, CallbackCancels) {
  Conversation conv(engine());
  GenerateRequest r = request("Q", 1, 50);
  int calls = 0;
  r.on_text = [&](const std::string&) { return ++calls < 3; };
  const GenerateResult g = generate(conv, r);
  EXPECT_EQ(g.finish, FinishReason::cancelled);
  EXPECT_LT(g.tokens.size(), 50u);
}

TEST(LogitAdjuster, OpenAIAndVllmFormulas) {
  LogitAdjust a;
  a.bias = {{0, 5.0f}, {3, -100.0f}, {99, 1.0f}};  // 99: past the logits, skipped
  a.repetition = 2.0f;
  a.presence = 0.5f;
  a.frequency = 0.25f;
  const std::vector<int> prompt = {1};
  LogitAdjuster adj(a, prompt);
  adj.took(2);
  adj.took(2);
  adj.took(4);
  std::vector<float> logits = {1.0f, 4.0f, -3.0f, 2.0f, 6.0f};
  adj.apply(logits);
  EXPECT_EQ(logits[0], 6.0f);                       // bias only
  EXPECT_EQ(logits[1], 2.0f);                       // in the prompt: repetition, positive / 2
  EXPECT_EQ(logits[2], -6.0f - 0.25f * 2 - 0.5f);   // output twice: * 2 (negative), then penalties
  EXPECT_EQ(logits[3], -98.0f);                     // bias, never seen
  EXPECT_EQ(logits[4], 3.0f - 0.25f - 0.5f);        // output once
}

TEST(Logprobs, LogSoftmaxAndTheTopK) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f};
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(-2.0));
  const TokenLogprob lp = token_logprob(logits, 0, 3);
  EXPECT_NEAR(lp.logprob, 1.0 - lse, 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 1);  // a tie goes to the lower id
  EXPECT_EQ(lp.top[1].first, 2);
  EXPECT_EQ(lp.top[2].first, 0);
  EXPECT_NEAR(lp.top[0].second, 3.0 - lse, 1e-6);
  EXPECT_TRUE(token_logprob(logits, 3, 0).top.empty());
  EXPECT_THROW(token_logprob(logits, 4, 0), Error);
  EXPECT_THROW(token_logprob(logits, 0, 21), Error);
}

// Logprobs are the model's, whatever the penalties did to what was sampled.
TEST(Generate, LogprobsAreTheModelsBeforePenalties) {
  GenerateRequest r = request("Tell me about logprobs", 3, 6);
  r.sampling.temperature = 0;
  r.logprobs = 2;
  r.adjust.bias = {{r.prompt[1], 50.0f}};
  Conversation conv(engine());
  const GenerateResult g = generate(conv, r);
  ASSERT_EQ(g.logprobs.size(), g.tokens.size());
  Conversation ref(engine());
  std::vector<float> logits = ref.prefill(r.prompt);
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    logits.resize(std::min<size_t>(logits.size(), engine().tokenizer().vocab_size()));
    const TokenLogprob want = token_logprob(logits, g.tokens[i], 2);
    EXPECT_EQ(g.logprobs[i].token, g.tokens[i]);
    EXPECT_EQ(g.logprobs[i].logprob, want.logprob);
    EXPECT_EQ(g.logprobs[i].top, want.top);
    logits = ref.feed(std::span<const int>(&g.tokens[i], 1));
  }
}

// A generation with penalties and biases samples what a plain loop over the model's logits
// with the formulas applied by hand samples (greedy and seeded), and the drafter stays off.
TEST(Generate, PenaltiesAndBiasesAreAppliedToWhatIsSampled) {
  for (const float temperature : {0.0f, 1.0f}) {
    GenerateRequest r = request("Tell me about penalties", 5, 24);
    r.sampling.temperature = temperature;
    r.adjust.presence = 0.7f;
    r.adjust.frequency = 0.4f;
    r.adjust.repetition = 1.3f;
    r.adjust.bias = {{r.prompt[0], 2.5f}, {7, -100.0f}};
    r.spec = SpecMode::mtp;
    r.draft = 2;
    Conversation conv(engine());
    const GenerateResult g = generate(conv, r);
    EXPECT_EQ(g.spec.steps, 0);

    // The reference: feed token by token, adjust by hand, sample with the same sampler.
    Conversation ref(engine());
    std::vector<float> logits = ref.prefill(r.prompt);
    Sampler sampler(r.sampling);
    std::map<int, int> counts;
    std::set<int> seen(r.prompt.begin(), r.prompt.end());
    std::vector<int> want;
    const int vocab = engine().tokenizer().vocab_size();
    for (int i = 0; i < r.max_tokens; ++i) {
      logits.resize(std::min<size_t>(logits.size(), vocab));
      for (const auto& [t, b] : r.adjust.bias) logits[t] += b;
      for (const int t : seen) logits[t] = logits[t] > 0 ? logits[t] / 1.3f : logits[t] * 1.3f;
      for (const auto& [t, n] : counts) logits[t] -= 0.4f * n + 0.7f;
      const int tok = sampler.sample(logits);
      want.push_back(tok);
      ++counts[tok];
      seen.insert(tok);
      logits = ref.feed(std::span<const int>(&tok, 1));
    }
    EXPECT_EQ(g.tokens, want) << "temperature " << temperature;
    EXPECT_EQ(std::count(g.tokens.begin(), g.tokens.end(), 7), 0);
  }
  GenerateRequest bad = request("x", 1, 4);
  bad.adjust.repetition = 0;
  EXPECT_THROW(validate(bad), Error);
  bad.adjust = {};
  bad.adjust.bias = {{1, 101.0f}};
  EXPECT_THROW(validate(bad), Error);
}

TEST(Conversation, ReusedCacheEqualsFreshPrefill) {
  const Tokenizer& tok = engine().tokenizer();
  const std::vector<int> first = tok.encode("User: hi. Assistant: hello."), second = tok.encode("User: hi. Assistant: hello. User: more?");
  Conversation reuse(engine()), fresh(engine());
  reuse.prefill(first);
  const std::vector<float> a = reuse.prefill(second);
  EXPECT_EQ(reuse.last_reused(), first.size());
  const std::vector<float> b = fresh.prefill(second);
  EXPECT_EQ(test::max_abs_err(a, b).err, 0.0);
  // A prompt that does not extend the history starts over.
  reuse.prefill(tok.encode("something else"));
  EXPECT_EQ(reuse.last_reused(), 0u);
}

TEST(Conversation, NextChatTurnReusesTheCache) {
  // Turn 1 answers (scripted), turn 2 renders the whole conversation again: its prompt extends
  // everything fed so far, so only the new part is prefilled.
  Conversation conv(engine());
  nlohmann::ordered_json messages = {{{"role", "user"}, {"content", "hello"}}};
  GenerateRequest r1;
  r1.prompt = chat_prompt_tokens(engine(), messages, nullptr, ReasoningMode::non_think);
  r1.forced_text = "Hi there.";
  const GenerateResult g1 = generate(conv, r1);
  ASSERT_EQ(g1.text, "Hi there.");
  messages.push_back({{"role", "assistant"}, {"content", g1.text}});
  messages.push_back({{"role", "user"}, {"content", "again"}});
  GenerateRequest r2;
  r2.prompt = chat_prompt_tokens(engine(), messages, nullptr, ReasoningMode::non_think);
  r2.max_tokens = 2;
  const GenerateResult g2 = generate(conv, r2);
  EXPECT_EQ(static_cast<size_t>(g2.reused_tokens), r1.prompt.size() + g1.tokens.size());
  EXPECT_GT(g2.reused_tokens, 0);
}

TEST(Conversation, InterleavedConversationsDoNotMix) {
  Conversation a(engine()), b(engine()), solo(engine());
  GenerateRequest ra = request("first conversation", 5, 6), rb = request("another one entirely", 6, 6);
  const GenerateResult alone = generate(solo, ra);
  generate(b, rb);  // b runs in between
  const GenerateResult mixed = generate(a, ra);
  EXPECT_EQ(mixed.tokens, alone.tokens);
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// The event log of the test below, written on the engine thread.
struct StepLog {
  std::mutex mu;
  std::vector<std::pair<char, size_t>> events;  // ('A', 0): a token of A; ('B', n): B's prefill reached n
  void add(char who, size_t n) {
    std::lock_guard lock(mu);
    events.emplace_back(who, n);
  }
  size_t count(char who) {
    std::lock_guard lock(mu);
    return static_cast<size_t>(std::count_if(events.begin(), events.end(), [&](const auto& e) { return e.first == who; }));
  }
};

void wait_done(Job& job) {
  for (;;) {
    const auto e = job.next(std::chrono::seconds(120));
    ASSERT_TRUE(e.has_value()) << "no event in 120 s";
    ASSERT_NE(e->kind, JobEvent::error) << e->text;
    if (e->kind == JobEvent::done) return;
  }
}

// n samples of one prompt: the first prefills all but the last token, the others copy its
// conversation there; each sample gets exactly what it gets alone.
TEST(Scheduler, SamplesShareThePromptsPrefillAndGetWhatTheyGetAlone) {
  for (const int slots : {4, 2}) {  // with 2 slots, the later samples wait for a free one
    Scheduler sched(engine(), slots, 8, 64);
    std::vector<GenerateRequest> reqs;
    for (int i = 0; i < 4; ++i) {
      GenerateRequest r = request("A prompt long enough to be worth sharing between the samples", 100 + i, 10);
      r.spec = SpecMode::mtp;  // turned off for samples
      reqs.push_back(r);
    }
    const std::vector<std::shared_ptr<Job>> jobs = sched.submit_samples(reqs);
    ASSERT_EQ(jobs.size(), 4u);
    for (size_t i = 0; i < jobs.size(); ++i) {
      const GenerateResult got = test::result_of(*jobs[i]);
      Conversation alone(engine());
      GenerateRequest r = reqs[i];
      r.spec = SpecMode::off;
      const GenerateResult want = generate(alone, r);
      EXPECT_EQ(got.tokens, want.tokens) << "sample " << i << ", " << slots << " slots";
      // The samples that found a free slot when the first reached its last prompt token
      // copied it: they prefilled one token.
      if (i > 0 && static_cast<int>(i) < slots)
        EXPECT_EQ(got.reused_tokens, static_cast<int>(r.prompt.size()) - 1) << "sample " << i;
    }
  }
}

TEST(Scheduler, ALongPrefillNeverStallsADecodingStream) {
  // A decodes a token every step while B's 4096-token prompt is prefilled: each step takes
  // A's token and a chunk of B's prompt from what is left of the budget, so A's next token is
  // never more than one step (kBudget tokens) away, whatever the length of B's prompt.
  constexpr int kBudget = 64;
  Scheduler sched(engine(), 2, 0, kBudget);
  StepLog log;
  GenerateRequest a = request("decode", 1, 300);
  a.forced_text = std::string(600, 'a');  // one token, one text delta per step
  a.on_text = [&](const std::string&) {
    log.add('A', 0);
    return true;
  };
  auto job_a = sched.submit(a);
  while (log.count('A') < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  GenerateRequest b = request("", 2, 2);
  b.prompt.resize(4096);
  for (size_t i = 0; i < b.prompt.size(); ++i) b.prompt[i] = 10 + static_cast<int>(i * 7919 % 200);
  b.on_prefill = [&](size_t done, size_t) { log.add('B', done); };
  auto job_b = sched.submit(b);
  wait_done(*job_b);
  wait_done(*job_a);

  std::lock_guard lock(log.mu);
  size_t prev_b = 0, chunks = 0;
  bool a_since_b = true;
  for (const auto& [who, n] : log.events) {
    if (who == 'A') {
      a_since_b = true;
      continue;
    }
    EXPECT_TRUE(a_since_b) << "two chunks of B's prefill (to " << prev_b << " and " << n << ") without a token of A";
    EXPECT_LE(n - prev_b, static_cast<size_t>(kBudget - 1)) << "a step of more than the budget";
    a_since_b = false;
    prev_b = n;
    ++chunks;
  }
  EXPECT_EQ(prev_b, 4096u);
  EXPECT_EQ(chunks, (4096u + kBudget - 2) / (kBudget - 1));  // every step's leftover budget used
  const SchedulerStats s = sched.stats();
  EXPECT_LE(s.max_step_tokens, static_cast<size_t>(kBudget));
  EXPECT_EQ(s.completed, 2u);
}

TEST(Scheduler, SpeculativeGenerationsBatchedGetWhatTheyGetAlone) {
  // Four generations in one scheduler, batched every step: greedy with the MTP drafter, the
  // same greedy without it, sampled with the drafter, and sampled without it. The greedy pair
  // gives one text; each of the others gives what it gives alone (same seed). A second greedy
  // request continuing the first conversation reuses its cache and drafter.
  GenerateRequest greedy_spec = request("speculative decoding in a batch", 1, 80);
  greedy_spec.sampling.temperature = 0;
  greedy_spec.spec = SpecMode::mtp;
  greedy_spec.draft = 1;
  GenerateRequest greedy_plain = greedy_spec;
  greedy_plain.spec = SpecMode::off;
  GenerateRequest sampled_spec = request("another prompt, sampled", 5, 60);
  sampled_spec.sampling.temperature = 0.8f;
  sampled_spec.spec = SpecMode::mtp;
  sampled_spec.draft = 1;
  GenerateRequest sampled_plain = request("and a third one", 6, 70);

  std::vector<GenerateResult> alone;
  for (const GenerateRequest* r : {&greedy_spec, &greedy_plain, &sampled_spec, &sampled_plain}) {
    Conversation conv(engine());
    alone.push_back(generate(conv, *r));
  }
  EXPECT_EQ(alone[0].tokens, alone[1].tokens);
  EXPECT_GT(alone[0].spec.steps, 0);

  Scheduler sched(engine(), 4, 0, 64);
  std::vector<std::shared_ptr<Job>> jobs;
  for (const GenerateRequest* r : {&greedy_spec, &greedy_plain, &sampled_spec, &sampled_plain})
    jobs.push_back(sched.submit(*r));
  for (size_t i = 0; i < jobs.size(); ++i) {
    const GenerateResult r = test::result_of(*jobs[i]);
    EXPECT_EQ(r.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(r.spec.steps, alone[i].spec.steps) << "request " << i;
  }
  const SchedulerStats st = sched.stats();
  EXPECT_EQ(st.spec.steps, alone[0].spec.steps + alone[2].spec.steps);
  EXPECT_EQ(st.spec.drafted, alone[0].spec.drafted + alone[2].spec.drafted);

  // The next turn of the greedy conversation: cached, drafting on, the same as a fresh prefill.
  GenerateRequest next = greedy_spec;
  next.prompt.insert(next.prompt.end(), alone[0].tokens.begin(), alone[0].tokens.end());
  const std::vector<int> more = engine().tokenizer().encode(" and more");
  next.prompt.insert(next.prompt.end(), more.begin(), more.end());
  next.max_tokens = 40;
  const GenerateResult continued = test::result_of(*sched.submit(next));
  EXPECT_GT(continued.reused_tokens, 0);
  EXPECT_GT(continued.spec.steps, 0);
  Conversation fresh(engine());
  GenerateRequest next_plain = next;
  next_plain.spec = SpecMode::off;
  EXPECT_EQ(continued.tokens, generate(fresh, next_plain).tokens);
}

}  // namespace
}  // namespace dsv4
