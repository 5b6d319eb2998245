// Tokenizer throughput, single thread: MB/s of UTF-8 input encoded, on English prose and on
// Chinese text (about 1 MB each, words shuffled with a fixed seed so no two runs of a word line
// up). Run: build/bench_tokenizer [--benchmark_filter=...]. Not a test: timings are noisy.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <sstream>

#include "tokenizer/tokenizer.h"

namespace {

const dsv4::Tokenizer& tok() {
  static const dsv4::Tokenizer t = dsv4::Tokenizer::load(DSV4_SHARED_DIR "/tokenizer/deepseek-v3/tokenizer.json");
  return t;
}

std::string shuffled(const std::vector<std::string>& words, size_t bytes, const char* sep) {
  std::mt19937 rng(1);
  std::string out;
  while (out.size() < bytes) out += words[rng() % words.size()] + sep;
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

const std::string& english() {
  static const std::string text = shuffled(
      split("The engine loads the official checkpoints as released, maps them into memory and checks "
            "every tensor against the configuration before it computes anything. Decoding a mixture of "
            "experts model is bound by the bytes of active weights read for each token, while prefill is "
            "bound by arithmetic; a careful implementation reaches both limits on an ordinary server. "
            "Tokenizers split text with regular expressions, map bytes to printable characters, and merge "
            "frequent pairs by rank until no known pair remains. Numbers like 1234567 and 3.14159, "
            "punctuation (commas, quotes \"like these\", dashes) and CamelCaseWords all take this path."),
      1 << 20, " ");
  return text;
}

const std::string& chinese() {
  static const std::vector<std::string> phrases = {
      "深度求索", "公司", "创造了", "大语言模型", "今天", "天气", "很好", "我们", "一起", "去", "公园",
      "散步", "温泉", "世界", "著名", "地质", "奇观", "旅游", "景点", "建议", "提前", "核实", "，", "。",
      "模型", "推理", "引擎", "内存", "带宽", "专家", "注意力", "压缩", "缓存", "中文测试"};
  static const std::string text = shuffled(phrases, 1 << 20, "");
  return text;
}

void encode(benchmark::State& state, const std::string& text) {
  size_t ids = 0;
  for (auto _ : state) {
    auto v = tok().encode(text);
    ids = v.size();
    benchmark::DoNotOptimize(v.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["bytes_per_token"] = static_cast<double>(text.size()) / static_cast<double>(ids);
}

void BM_encode_english(benchmark::State& s) { encode(s, english()); }
void BM_encode_chinese(benchmark::State& s) { encode(s, chinese()); }
void BM_decode_english(benchmark::State& state) {
  const std::vector<int> ids = tok().encode(english());
  for (auto _ : state) benchmark::DoNotOptimize(tok().decode(ids).size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(english().size()));
}

BENCHMARK(BM_encode_english)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_encode_chinese)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_decode_english)->Unit(benchmark::kMillisecond)->MinTime(1);

}  // namespace

BENCHMARK_MAIN();
