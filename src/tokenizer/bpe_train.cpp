// BPE training: words (pre-tokenizer pieces) with their counts, each a sequence of symbol ids
// (bytes first, then one id per merge); pair counts kept up to date incrementally, and a lazy
// max-heap of (count, pair) whose stale entries are skipped when popped.
#include "tokenizer/bpe_train.h"

#include <nlohmann/json.hpp>
#include <queue>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

namespace {

uint64_t key(int a, int b) { return static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b); }

}  // namespace

const std::vector<std::string>& v4_special_tokens() {
  static const std::vector<std::string> t = {
      "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
      "<｜latest_reminder｜>", "<think>", "</think>", "｜DSML｜", "<｜action｜>", "<｜query｜>",
      "<｜authority｜>", "<｜domain｜>", "<｜title｜>", "<｜read_url｜>"};
  return t;
}


std::string byte_level_tokenizer_json(const std::vector<std::pair<std::string, std::string>>& merges) {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  const auto& specials = v4_special_tokens();
  for (size_t i = 0; i < specials.size(); ++i) {
    vocab[specials[i]] = i;
    added.push_back({{"id", i}, {"content", specials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  size_t id = specials.size();
  for (int b = 0; b < 256; ++b) vocab[Tokenizer::byte_level_text(std::string(1, static_cast<char>(b)))] = id++;
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& [a, b] : merges) {
    const std::string t = Tokenizer::byte_level_text(a + b);
    DSV4_CHECK(!vocab.contains(t), "merge '", a, "' + '", b, "' makes a token the vocabulary has");
    vocab[t] = id++;
    merge_list.push_back(Tokenizer::byte_level_text(a) + " " + Tokenizer::byte_level_text(b));
  }
  // The same pre-tokenizer as DeepSeek's tokenizer.json.
  const nlohmann::ordered_json split = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "Split"}, {"pattern", {{"Regex", "[一-龥぀-ゟ゠-ヿ]+"}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "Split"},
         {"pattern", {{"Regex", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  nlohmann::ordered_json t = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", nlohmann::ordered_json::array()}}},
      {"pre_tokenizer", split}, {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
                 {"vocab", vocab}, {"merges", merge_list}}}};
  return t.dump(1);
}

std::vector<std::pair<std::string, std::string>> train_bpe(const std::string& text, int n_merges, int min_count,
                                                           const std::function<void(double)>& progress) {
  DSV4_CHECK(n_merges >= 0, "the number of merges must be >= 0");
  DSV4_CHECK(min_count >= 1, "min_count must be >= 1");
  // Words: the pieces of the tokenizer's own pre-tokenizer, counted.
  const Tokenizer base = Tokenizer::from_json(byte_level_tokenizer_json(), "the byte-level tokenizer");
  std::unordered_map<std::string_view, long long> counted;
  for (const std::string_view w : base.pretokenize(text)) ++counted[w];
  std::vector<std::vector<int>> words;
  std::vector<long long> count;
  for (const auto& [w, c] : counted) {
    words.emplace_back(w.begin(), w.end());
    for (int& s : words.back()) s = static_cast<unsigned char>(s);
    count.push_back(c);
  }
  std::vector<std::string> symbol(256);  // symbol id -> raw bytes
  for (int b = 0; b < 256; ++b) symbol[b] = std::string(1, static_cast<char>(b));

  std::unordered_map<uint64_t, long long> pair_count;
  std::unordered_map<uint64_t, std::unordered_set<int>> pair_words;
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t k = key(words[w][i], words[w][i + 1]);
      pair_count[k] += count[w];
      pair_words[k].insert(static_cast<int>(w));
    }
  // Max-heap by count, then the smaller pair of byte strings first.
  struct Entry {
    long long count;
    uint64_t pair;
  };
  auto worse = [&](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const int xa = static_cast<int>(x.pair >> 32), xb = static_cast<int>(x.pair & 0xFFFFFFFF);
    const int ya = static_cast<int>(y.pair >> 32), yb = static_cast<int>(y.pair & 0xFFFFFFFF);
    return std::tie(symbol[xa], symbol[xb]) > std::tie(symbol[ya], symbol[yb]);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int>(merges.size()) < n_merges && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    if (it == pair_count.end() || it->second != top.count) continue;  // stale
    if (top.count < min_count) break;
    const int a = static_cast<int>(top.pair >> 32), b = static_cast<int>(top.pair & 0xFFFFFFFF);
    const int ab = static_cast<int>(symbol.size());
    symbol.push_back(symbol[a] + symbol[b]);
    merges.emplace_back(symbol[a], symbol[b]);
    // Rewrite the words holding the pair; their pair counts move from the old pairs to the new.
    std::unordered_set<uint64_t> touched;
    const std::unordered_set<int> holders = pair_words[top.pair];
    for (const int w : holders) {
      std::vector<int>& s = words[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = key(s[i], s[i + 1]);
        pair_count[k] -= count[w];
        touched.insert(k);
      }
      std::vector<int> merged;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(ab);
          ++i;
        } else {
          merged.push_back(s[i]);
        }
      }
      s.swap(merged);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = key(s[i], s[i + 1]);
        pair_count[k] += count[w];
        pair_words[k].insert(w);
        touched.insert(k);
      }
    }
    for (const uint64_t k : touched) {
      if (pair_count[k] <= 0) {
        pair_count.erase(k);
        pair_words.erase(k);
      } else {
        heap.push({pair_count[k], k});
      }
    }
    if (progress) progress(static_cast<double>(merges.size()) / n_merges);
  }
  return merges;
}

}  // namespace dsv4
