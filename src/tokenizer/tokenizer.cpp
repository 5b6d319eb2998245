// tokenizer.json loading, encode and decode.
//
// The byte-level alphabet (GPT-2's): printable bytes map to themselves as characters, the
// other 68 bytes to U+0100 onwards in byte order, so every byte string is a string of
// printable characters; vocab and merges are written in that alphabet.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/json_input.h"
#include "core/read_file.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

using json = nlohmann::json;

struct ByteAlphabet {
  uint32_t byte_to_cp[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteAlphabet() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_to_cp[b] = printable ? b : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

// Byte-level token text -> raw bytes; false if a character is outside the alphabet.
bool token_to_bytes(const std::string& tok, std::string& out) {
  out.clear();
  size_t i = 0;
  while (i < tok.size()) {
    const uint32_t cp = utf8_next(tok, i);
    auto it = alphabet().cp_to_byte.find(cp);
    if (it == alphabet().cp_to_byte.end()) return false;
    out += static_cast<char>(it->second);
  }
  return true;
}

constexpr size_t kMaxCachedWord = 64, kMaxCacheEntries = 1 << 17;

uint64_t pair_key(int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

void collect_splits(const json& pre, std::vector<std::string>& patterns, const std::string& where) {
  const std::string type = pre.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : pre.at("pretokenizers")) collect_splits(p, patterns, where);
  } else if (type == "Split") {
    DSV4_CHECK(pre.value("behavior", "") == "Isolated" && !pre.value("invert", false), where,
               ": only Split with behavior Isolated and invert false is supported");
    const json& pat = pre.at("pattern");
    DSV4_CHECK(pat.contains("Regex"), where, ": Split pattern must be a Regex");
    patterns.push_back(pat["Regex"].get<std::string>());
  } else if (type == "ByteLevel") {
    DSV4_CHECK(!pre.value("use_regex", true), where,
               ": ByteLevel pre-tokenizer with use_regex is not supported (DeepSeek splits with Split)");
  } else {
    fail(where, ": unsupported pre_tokenizer type '", type, "'");
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::string Tokenizer::byte_level_text(std::string_view raw) {
  std::string out;
  for (unsigned char c : raw) utf8_append(out, alphabet().byte_to_cp[c]);
  return out;
}

Tokenizer Tokenizer::load(const std::string& path) { return from_json(read_file(path), path); }

Tokenizer Tokenizer::from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = parse_json<json>(text);
  } catch (const std::exception& e) {
    fail(where, ": not valid JSON: ", e.what());
  }
  Tokenizer t;
  try {
    const json& model = j.at("model");
    DSV4_CHECK(model.value("type", "") == "BPE", where, ": model type must be BPE");
    DSV4_CHECK(!model.value("byte_fallback", false), where, ": byte_fallback is not supported");
    DSV4_CHECK(j.at("normalizer").is_null() || j["normalizer"].value("normalizers", json::array()).empty(),
               where, ": normalizers are not supported");
    std::vector<std::string> patterns;
    if (!j.at("pre_tokenizer").is_null()) collect_splits(j["pre_tokenizer"], patterns, where);
    for (const auto& p : patterns) t.splits_.push_back(std::make_unique<Regex>(p));

    // An id is an integer in [0, 2^24): nlohmann's get<int> of a float beyond int's range is
    // undefined behaviour (fuzz_tokenizer_json found it), and the id table is sized by the largest.
    const auto token_id = [&](const json& v, const std::string& what) {
      DSV4_CHECK(v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() < (1 << 24), where, ": ",
                 what, " has id ", v.dump(), ", not an integer in [0, 16777216)");
      return v.get<int>();
    };
    int max_id = -1;
    for (auto it = model.at("vocab").begin(); it != model["vocab"].end(); ++it)
      max_id = std::max(max_id, token_id(*it, "vocab token '" + it.key() + "'"));
    for (const auto& a : j.at("added_tokens")) max_id = std::max(max_id, token_id(a.at("id"), "an added token"));
    t.id_to_token_.assign(max_id + 1, std::string());
    t.is_added_.assign(max_id + 1, false);
    std::string bytes;
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
      const int id = it->get<int>();  // checked above
      // Special tokens appear in the vocab too, written as plain text: keep them as they are.
      if (!token_to_bytes(it.key(), bytes)) bytes = it.key();
      t.vocab_[it.key()] = id;
      t.id_to_token_[id] = bytes;
    }
    for (int b = 0; b < 256; ++b) {
      std::string s;
      utf8_append(s, alphabet().byte_to_cp[b]);
      auto it = t.vocab_.find(s);
      DSV4_CHECK(it != t.vocab_.end(), where, ": vocab lacks the token for byte ", b);
      t.byte_id_[b] = it->second;
    }
    int rank = 0;
    for (const auto& m : model.at("merges")) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        DSV4_CHECK(sp != std::string::npos, where, ": merge '", s, "' has no space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      auto ia = t.vocab_.find(a), ib = t.vocab_.find(b), iab = t.vocab_.find(a + b);
      DSV4_CHECK(ia != t.vocab_.end() && ib != t.vocab_.end() && iab != t.vocab_.end(), where,
                 ": merge '", a, " ", b, "' uses tokens missing from the vocab");
      t.merges_.emplace(pair_key(ia->second, ib->second), std::make_pair(rank++, iab->second));
    }
    for (const auto& a : j.at("added_tokens")) {
      const int id = a.at("id").get<int>();  // checked above
      const std::string content = a.at("content").get<std::string>();
      DSV4_CHECK(!content.empty(), where, ": added token ", id, " is empty");
      t.added_.push_back({content, id});
      t.added_ids_[content] = id;
      t.id_to_token_[id] = content;
      t.is_added_[id] = true;
    }
  } catch (const json::exception& e) {
    fail(where, ": unexpected tokenizer.json structure: ", e.what());
  }
  // Candidates per first byte, longest first: the first that matches is the longest match.
  t.added_by_first_byte_.assign(256, {});
  for (size_t i = 0; i < t.added_.size(); ++i)
    t.added_by_first_byte_[static_cast<unsigned char>(t.added_[i].content[0])].push_back(static_cast<int>(i));
  for (auto& v : t.added_by_first_byte_)
    std::sort(v.begin(), v.end(), [&](int x, int y) { return t.added_[x].content.size() > t.added_[y].content.size(); });
  return t;
}

int Tokenizer::special_id(const std::string& content) const {
  auto it = added_ids_.find(content);
  return it == added_ids_.end() ? -1 : it->second;
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  const size_t bad = utf8_invalid_at(text);
  DSV4_CHECK(bad == std::string_view::npos, "text is not valid UTF-8 at byte ", bad);
  std::vector<int> out;
  size_t piece_start = 0, i = 0;
  while (i < text.size()) {
    const Added* hit = nullptr;
    for (int k : added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const std::string& c = added_[k].content;
      if (text.compare(i, c.size(), c) == 0) {
        hit = &added_[k];
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > piece_start) encode_piece(text.substr(piece_start, i - piece_start), out);
    out.push_back(hit->id);
    i += hit->content.size();
    piece_start = i;
  }
  if (piece_start < text.size()) encode_piece(text.substr(piece_start), out);
  return out;
}

std::vector<std::string_view> Tokenizer::pretokenize(std::string_view text) const {
  // The regex runs without PCRE2's own UTF-8 check (once per piece would cost), so text from
  // outside is checked here: invalid UTF-8 would read past the end of a sequence.
  const size_t bad = utf8_invalid_at(text);
  DSV4_CHECK(bad == std::string_view::npos, "text is not valid UTF-8 at byte ", bad);
  return split_valid(text);
}

std::vector<std::string_view> Tokenizer::split_valid(std::string_view piece) const {
  // Each Split pattern refines the pieces of the previous one: matches and the gaps between
  // them all become pieces.
  std::vector<std::pair<size_t, size_t>> pieces{{0, piece.size()}}, next, matches;
  for (const auto& re : splits_) {
    next.clear();
    for (const auto& [b, e] : pieces) {
      re->find_all(piece.substr(b, e - b), matches);
      size_t at = b;
      for (const auto& [mb, me] : matches) {
        if (b + mb > at) next.emplace_back(at, b + mb);
        next.emplace_back(b + mb, b + me);
        at = b + me;
      }
      if (at < e) next.emplace_back(at, e);
    }
    pieces.swap(next);
  }
  std::vector<std::string_view> out;
  out.reserve(pieces.size());
  for (const auto& [b, e] : pieces) out.push_back(piece.substr(b, e - b));
  return out;
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<int>& out) const {
  for (const std::string_view word : split_valid(piece)) {  // encode() checked the UTF-8
    if (word.size() > kMaxCachedWord) {
      bpe(word, out);
      continue;
    }
    const std::string key(word);
    {
      std::shared_lock lock(*cache_mu_);
      auto it = cache_.find(key);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    std::vector<int> ids;
    bpe(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::unique_lock lock(*cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(key, std::move(ids));
  }
}

void Tokenizer::bpe(std::string_view word, std::vector<int>& out) const {
  // Symbols start as single bytes in a linked list; a min-heap holds candidate merges ordered
  // by (rank, position), so equal-rank pairs merge left to right. A popped candidate whose
  // symbols have changed since it was pushed is stale and skipped. O(n log n) per word.
  const int n = static_cast<int>(word.size());
  if (n == 0) return;
  std::vector<int> sym(n), prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    sym[i] = byte_id_[static_cast<unsigned char>(word[i])];
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Cand> heap;
  auto push = [&](int pos) {
    if (pos < 0) return;  // before the first symbol: checked before next[] is read
    const int nx = next[pos];
    if (nx < 0) return;
    auto it = merges_.find(pair_key(sym[pos], sym[nx]));
    if (it == merges_.end()) return;
    heap.push_back({it->second.first, pos, sym[pos], sym[nx]});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Cand c = heap.back();
    heap.pop_back();
    const int nx = next[c.pos];
    if (sym[c.pos] != c.left || nx < 0 || sym[nx] != c.right) continue;  // stale
    sym[c.pos] = merges_.at(pair_key(c.left, c.right)).second;
    sym[nx] = -1;  // removed
    next[c.pos] = next[nx];
    if (next[nx] >= 0) prev[next[nx]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

std::string Tokenizer::token_bytes(int id) const {
  DSV4_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
  return id_to_token_[id];
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string out;
  for (int id : ids) out += token_bytes(id);
  return out;
}

std::string IncrementalDecoder::push(int id) {
  pending_ += t_.token_bytes(id);
  const size_t n = utf8_complete_prefix(pending_);
  std::string ready = utf8_sanitize(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return ready;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  for (size_t i = 0; i < pending_.size(); ++i) out += "\xEF\xBF\xBD";  // U+FFFD per stray byte
  pending_.clear();
  return out;
}

}  // namespace dsv4
