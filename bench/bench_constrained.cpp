// The cost of constrained decoding per generated token: one token mask (VocabTrie::allowed)
// from matcher states an answer passes through, on DeepSeek's 129K vocabulary and on the
// default model's 4K one. Run: build/bench_constrained (ns per mask; compare with the model's
// time per token).
#include <benchmark/benchmark.h>

#include <map>
#include <nlohmann/json.hpp>

#include "grammar/json_matcher.h"
#include "grammar/vocab_trie.h"

namespace {

const dsv4::Tokenizer& deepseek() {
  static const dsv4::Tokenizer t = dsv4::Tokenizer::load(DSV4_SHARED_DIR "/tokenizer/deepseek-v3/tokenizer.json");
  return t;
}
const dsv4::Tokenizer& tiny() {
  static const dsv4::Tokenizer t = dsv4::Tokenizer::load(DSV4_SOURCE_DIR "/models/dsv4-tiny/tokenizer.json");
  return t;
}

const std::shared_ptr<const dsv4::JsonSchema>& schema() {
  static const auto s = dsv4::JsonSchema::compile(nlohmann::json::parse(R"({"type": "object", "properties": {
      "name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
      "required": ["name", "age"]})"));
  return s;
}

// Where the answer is: the prefix fed before the mask is computed.
const char* const kPrefixes[] = {"", R"({"na)", R"({"name": "The quick brown)", R"({"name": "x", "age": 4)",
                                 R"({"name": "x", "tags": [)"};

void mask(benchmark::State& state, const dsv4::Tokenizer& t) {
  static std::map<const dsv4::Tokenizer*, std::unique_ptr<dsv4::VocabTrie>> tries;
  auto& trie = tries[&t];
  if (!trie) trie = std::make_unique<dsv4::VocabTrie>(t);
  dsv4::JsonMatcher m(*schema());
  if (!m.feed(kPrefixes[state.range(0)])) state.SkipWithError("prefix refused");
  std::vector<uint8_t> allowed(t.vocab_size());
  size_t n_allowed = 0;
  for (auto _ : state) {
    std::fill(allowed.begin(), allowed.end(), 0);
    trie->allowed(m, allowed);
    benchmark::DoNotOptimize(allowed.data());
  }
  for (const uint8_t a : allowed) n_allowed += a;
  state.counters["allowed"] = static_cast<double>(n_allowed);
  state.SetLabel(kPrefixes[state.range(0)]);
}

void BM_MaskDeepSeek(benchmark::State& s) { mask(s, deepseek()); }
void BM_MaskTiny(benchmark::State& s) { mask(s, tiny()); }
BENCHMARK(BM_MaskDeepSeek)->DenseRange(0, 4)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MaskTiny)->DenseRange(0, 4)->Unit(benchmark::kMicrosecond);

void BM_TrieBuildDeepSeek(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(dsv4::VocabTrie(deepseek()));
}
BENCHMARK(BM_TrieBuildDeepSeek)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
