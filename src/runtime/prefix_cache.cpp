#include "runtime/prefix_cache.h"

#include <algorithm>
#include <numeric>

#include "core/check.h"

namespace dsv4 {

namespace {

constexpr size_t kStrideTokens = 1024;  // shared heads are found at this granularity
constexpr int kMinUnit = 16;

// FNV-1a over the token ids, one step per token, so that every boundary's key comes from one
// pass over the prompt. A key only finds candidates: the tokens are compared before any use.
constexpr uint64_t kFnvBasis = 1469598103934665603ull, kFnvPrime = 1099511628211ull;
uint64_t fnv_step(uint64_t h, int token) {
  const auto t = static_cast<uint32_t>(token);
  for (int b = 0; b < 4; ++b) h = (h ^ ((t >> (8 * b)) & 0xFF)) * kFnvPrime;
  return h;
}

// The tokens a snapshot at pos is keyed by (see the header).
size_t key_length(size_t pos, SpecMode mode) { return pos + (mode == SpecMode::mtp ? 1 : 0); }
uint64_t key_basis(SpecMode mode) { return (kFnvBasis ^ static_cast<uint64_t>(mode)) * kFnvPrime; }

size_t rows_bytes(const CompressorState& c) {
  return c.entries.bytes() + (c.kv.size() + c.score.size() + c.log.size()) * sizeof(float);
}

int checked_unit(int unit) {
  DSV4_CHECK(unit > 0, "prefix cache: a snapshot unit of ", unit, " tokens");
  return unit;
}

size_t layers_bytes(const std::vector<LayerCache>& layers) {
  size_t n = 0;
  for (const LayerCache& l : layers) n += l.window.bytes() + rows_bytes(l.compressor) + rows_bytes(l.indexer);
  return n;
}

}  // namespace

size_t session_bytes(const Session& s) { return layers_bytes(s.layers) + layers_bytes(s.mtp); }

int PrefixCache::snapshot_unit(const ModelConfig& c) {
  int unit = 1;
  for (int r : c.compress_ratios)
    if (r > 0) unit = std::lcm(unit, r);
  return unit * ((kMinUnit + unit - 1) / unit);
}

PrefixCache::PrefixCache(size_t budget, int unit)
    : budget_(budget),
      unit_(checked_unit(unit)),
      stride_(unit * static_cast<int>(std::max<size_t>(1, kStrideTokens / unit))) {
  DSV4_CHECK(budget > 0, "prefix cache: a budget of 0 bytes");
  stats_.budget = budget;
}

bool PrefixCache::wanted(size_t pos, size_t prompt_len, SpecMode mode) const {
  if (pos == 0 || pos % unit_ != 0 || key_length(pos, mode) > prompt_len) return false;
  return pos % stride_ == 0 || pos == prompt_len / unit_ * unit_ || pos == (prompt_len - 1) / unit_ * unit_;
}

size_t PrefixCache::next_wanted(size_t pos, size_t prompt_len, SpecMode mode) const {
  for (size_t p = (pos / unit_ + 1) * unit_; p <= prompt_len; p += unit_)
    if (wanted(p, prompt_len, mode)) return p;
  return 0;
}

size_t PrefixCache::restore(std::span<const int> prompt, size_t at_least, Session& out, SpecMode mode,
                            DsparkState* dspark) {
  DSV4_CHECK(mode != SpecMode::dspark || dspark, "prefix cache: a DSpark restore without its state");
  // Every boundary's key, shortest first: boundaries b < prompt size, keyed by key_length(b).
  std::vector<uint64_t> keys;
  uint64_t h = key_basis(mode);
  for (size_t i = 0; i < prompt.size(); ++i) {
    h = fnv_step(h, prompt[i]);
    const size_t len = i + 1, b = len - (mode == SpecMode::mtp ? 1 : 0);
    if (b > 0 && b % unit_ == 0 && b < prompt.size()) keys.push_back(h);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = keys.size(); i > 0; --i) {
    const size_t pos = i * unit_, len = key_length(pos, mode);
    if (pos <= at_least) break;
    const auto it = by_key_.find(keys[i - 1]);
    if (it == by_key_.end()) continue;
    const Entry& e = *it->second;
    if (e.mode != mode || e.tokens.size() != len || !std::equal(e.tokens.begin(), e.tokens.end(), prompt.begin()))
      continue;
    lru_.splice(lru_.begin(), lru_, it->second);
    out.pos = e.session.pos;
    out.layers = e.session.layers;
    out.mtp_pos = e.session.mtp_pos;
    out.mtp = e.session.mtp;
    if (mode == SpecMode::dspark) *dspark = e.dspark;
    ++stats_.hits;
    stats_.tokens_reused += static_cast<long long>(pos - at_least);
    return pos;
  }
  ++stats_.misses;
  return 0;
}

void PrefixCache::store(std::span<const int> prompt, const Session& s, SpecMode mode, const DsparkState* dspark) {
  const size_t pos = static_cast<size_t>(s.pos), len = key_length(pos, mode);
  DSV4_CHECK(pos > 0 && pos % unit_ == 0 && len <= prompt.size(), "prefix cache: a snapshot at ", pos, " of ",
             prompt.size(), " prompt tokens (", mode == SpecMode::mtp ? "MTP: the next token needed, " : "",
             "at a multiple of ", unit_, ")");
  DSV4_CHECK(mode != SpecMode::dspark || (dspark && dspark->pos == s.pos),
             "prefix cache: a DSpark snapshot without its state at the session's position");
  DSV4_CHECK(mode != SpecMode::mtp || s.mtp_pos == s.pos, "prefix cache: an MTP snapshot whose layer is at ",
             s.mtp_pos, ", the session at ", s.pos);
  uint64_t key = key_basis(mode);
  for (size_t i = 0; i < len; ++i) key = fnv_step(key, prompt[i]);
  Entry e{key, mode, std::vector<int>(prompt.begin(), prompt.begin() + static_cast<long>(len)), Session{}, {}, 0};
  e.session.pos = s.pos;
  e.session.layers = s.layers;
  e.session.mtp_pos = s.mtp_pos;
  e.session.mtp = s.mtp;
  if (mode == SpecMode::dspark) e.dspark = *dspark;
  e.bytes = session_bytes(e.session) + len * sizeof(int);
  for (const KvRows& r : e.dspark.rings) e.bytes += r.bytes();
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto it = by_key_.find(key); it != by_key_.end()) {  // the same prefix again, or a collision
    stats_.bytes -= it->second->bytes;
    lru_.erase(it->second);
    by_key_.erase(it);
  }
  if (e.bytes > budget_) return;  // would evict everything and still not fit
  evict_to(budget_ - e.bytes);
  lru_.push_front(std::move(e));
  by_key_[key] = lru_.begin();
  stats_.bytes += lru_.front().bytes;
  ++stats_.stored;
}

void PrefixCache::evict_to(size_t budget) {
  while (stats_.bytes > budget && !lru_.empty()) {
    stats_.bytes -= lru_.back().bytes;
    by_key_.erase(lru_.back().key);
    lru_.pop_back();
    ++stats_.evictions;
  }
}

PrefixCacheStats PrefixCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  PrefixCacheStats s = stats_;
  s.entries = lru_.size();
  return s;
}

}  // namespace dsv4
