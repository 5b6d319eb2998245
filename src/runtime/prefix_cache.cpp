#include "runtime/prefix_cache.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "core/check.h"
#include "core/read_file.h"
#include "core/write_file.h"

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
    const uint64_t key = keys[i - 1];
    std::shared_ptr<const Snapshot> snap;
    bool from_disk = false;
    if (const auto it = by_key_.find(key); it != by_key_.end()) {
      snap = it->second->snap;
      lru_.splice(lru_.begin(), lru_, it->second);
    } else if (disk_.count(key)) {
      snap = read_disk(key, dspark);
      from_disk = snap != nullptr;
    }
    if (!snap || snap->mode != mode || snap->tokens.size() != len ||
        !std::equal(snap->tokens.begin(), snap->tokens.end(), prompt.begin()))
      continue;  // none, or another prefix under the same key
    if (from_disk) insert(key, snap);
    if (const auto d = disk_.find(key); d != disk_.end()) d->second.last_use = ++use_counter_;  // disk LRU
    set_caches(out, snap->session);
    if (mode == SpecMode::dspark) *dspark = snap->dspark;
    ++stats_.hits;
    stats_.disk_hits += from_disk;
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
  auto snap = std::make_shared<Snapshot>();
  snap->mode = mode;
  snap->tokens.assign(prompt.begin(), prompt.begin() + static_cast<long>(len));
  set_caches(snap->session, s);
  if (mode == SpecMode::dspark) snap->dspark = *dspark;
  std::lock_guard<std::mutex> lock(mu_);
  insert(key, snap);
  ++stats_.stored;
  if (writing_enabled_) {
    to_write_.emplace_back(key, std::move(snap));
    write_cv_.notify_one();
  }
}

void PrefixCache::insert(uint64_t key, std::shared_ptr<const Snapshot> snap) {
  if (const auto it = by_key_.find(key); it != by_key_.end()) {  // the same prefix again, or a collision
    stats_.bytes -= it->second->bytes;
    lru_.erase(it->second);
    by_key_.erase(it);
  }
  size_t bytes = session_bytes(snap->session) + snap->tokens.size() * sizeof(int);
  for (const KvRows& r : snap->dspark.rings) bytes += r.bytes();
  if (bytes > budget_) return;  // would evict everything and still not fit
  evict_to(budget_ - bytes);
  lru_.push_front({key, std::move(snap), bytes});
  by_key_[key] = lru_.begin();
  stats_.bytes += bytes;
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
  s.disk_entries = disk_.size();
  s.disk_budget = disk_budget_;
  return s;
}

// The disk tier. Files are named by the fingerprint and the key, so that models sharing a
// directory keep apart; the header says again what the name says, and the checksum covers the
// payload, so a file renamed, truncated or flipped is found out when read.

namespace {

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

constexpr const char* kSuffix = ".dsv4snap";

}  // namespace

bool PrefixCache::attach_disk(const std::string& dir, size_t disk_budget, const Model& m, uint64_t fingerprint,
                              std::function<void(const std::string&)> warn) {
  namespace fs = std::filesystem;
  DSV4_CHECK(dir_.empty(), "prefix cache: a disk tier is already attached");
  DSV4_CHECK(disk_budget > 0, "prefix cache: a disk budget of 0 bytes");
  warn_ = warn ? std::move(warn) : [](const std::string&) {};
  // A directory that cannot be made or written to: the cache stays in RAM, with a warning.
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path probe = fs::path(dir) / ".dsv4-write-test";
  try {
    DSV4_CHECK(fs::is_directory(dir), "not a directory and cannot be made one",
               ec ? " (" + ec.message() + ")" : std::string());
    write_file(probe.string(), "x");
    fs::remove(probe, ec);
  } catch (const std::exception& e) {
    warn_("prefix cache: --cache-dir " + dir + ": " + e.what() + "; snapshots stay in RAM");
    return false;
  }
  model_ = &m;
  fingerprint_ = fingerprint;
  disk_budget_ = disk_budget;
  const std::string prefix = hex(fingerprint_) + "-", tmp_prefix = ".tmp-" + prefix;
  for (const auto& f : fs::directory_iterator(dir)) {
    const std::string name = f.path().filename().string();
    if (name.starts_with(tmp_prefix)) {  // a write cut short (a crash, SIGKILL): never renamed into place
      fs::remove(f.path(), ec);
      continue;
    }
    if (!name.starts_with(prefix) || !name.ends_with(kSuffix) || name.size() != prefix.size() + 16 + 9) continue;
    const std::string key_hex = name.substr(prefix.size(), 16);
    if (key_hex.find_first_not_of("0123456789abcdef") != std::string::npos) continue;
    const uint64_t key = std::stoull(key_hex, nullptr, 16);
    try {
      std::string head(kSnapshotHeaderBytes, '\0');
      std::FILE* fp = std::fopen(f.path().c_str(), "rb");
      DSV4_CHECK(fp, f.path().string(), ": cannot be read");
      const size_t got = std::fread(head.data(), 1, head.size(), fp);
      std::fclose(fp);
      head.resize(got);
      const SnapshotHeader h = read_snapshot_header(head, f.path().string());
      DSV4_CHECK(h.fingerprint == fingerprint_, f.path().string(),
                 ": made by another checkpoint or other settings (activation rounding, model-parallel ranks)");
      const size_t size = fs::file_size(f.path());
      DSV4_CHECK(size == kSnapshotHeaderBytes + h.payload_bytes, f.path().string(), ": truncated (", size, " of ",
                 kSnapshotHeaderBytes + h.payload_bytes, " bytes)");
      disk_[key] = {f.path().string(), size, 0};
      stats_.disk_bytes += size;
    } catch (const Error& e) {
      drop_bad(f.path().string(), e.what());
    }
  }
  // What the directory held beyond the budget (a smaller --cache-disk than before) goes now.
  evict_disk_to(disk_budget_);
  dir_ = dir;
  writing_enabled_ = true;
  writer_ = std::thread([this] { write_loop(); });
  return true;
}

void PrefixCache::drop_bad(const std::string& path, const std::string& why) {
  ++stats_.disk_bad;
  warn_("prefix cache: skipping and removing " + why);
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

void PrefixCache::evict_disk_to(size_t budget) {
  while (stats_.disk_bytes > budget && !disk_.empty()) {
    auto victim = disk_.begin();
    for (auto d = disk_.begin(); d != disk_.end(); ++d)
      if (d->second.last_use < victim->second.last_use) victim = d;
    std::error_code ec;
    std::filesystem::remove(victim->second.path, ec);
    stats_.disk_bytes -= victim->second.bytes;
    disk_.erase(victim);
    ++stats_.disk_evictions;
  }
}

std::shared_ptr<const Snapshot> PrefixCache::read_disk(uint64_t key, const DsparkState* dspark_layout) {
  const auto it = disk_.find(key);
  try {
    const std::string bytes = read_file(it->second.path);
    auto snap = std::make_shared<const Snapshot>(decode_snapshot(bytes, fingerprint_, *model_, it->second.path));
    DSV4_CHECK(snap->mode != SpecMode::dspark || (dspark_layout && same_layout(snap->dspark, *dspark_layout)),
               it->second.path, ": DSpark rings of another layout than the drafter's");
    return snap;
  } catch (const Error& e) {
    stats_.disk_bytes -= it->second.bytes;
    const std::string path = it->second.path;
    disk_.erase(it);
    drop_bad(path, e.what());
    return nullptr;
  }
}

void PrefixCache::write_loop() {
  namespace fs = std::filesystem;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    write_cv_.wait(lock, [&] { return stop_ || !to_write_.empty(); });
    if (to_write_.empty()) return;  // stopping, everything written
    auto [key, snap] = std::move(to_write_.front());
    to_write_.pop_front();
    if (!writing_enabled_) {
      written_cv_.notify_all();
      continue;
    }
    writing_ = true;
    lock.unlock();
    // Encoded and written outside the lock: the scheduler's restores and stores go on.
    const std::string bytes = encode_snapshot(*snap, fingerprint_);
    const fs::path final_path = fs::path(dir_) / (hex(fingerprint_) + "-" + hex(key) + kSuffix);
    const fs::path tmp = fs::path(dir_) / (".tmp-" + hex(fingerprint_) + "-" + hex(key));
    lock.lock();
    // Room first, so that the files never take more than the budget (the one being replaced
    // counts until it is); a snapshot larger than the whole budget is not written.
    bool ok = bytes.size() <= disk_budget_;
    if (ok) {
      if (const auto old = disk_.find(key); old != disk_.end()) {
        stats_.disk_bytes -= old->second.bytes;
        std::error_code ec;
        fs::remove(old->second.path, ec);
        disk_.erase(old);
      }
      evict_disk_to(disk_budget_ - bytes.size());
      stats_.disk_bytes += bytes.size();  // reserved while it is written
      lock.unlock();
      try {
        write_file(tmp.string(), bytes);
        fs::rename(tmp, final_path);
      } catch (const std::exception& e) {
        ok = false;
        std::error_code ec;
        fs::remove(tmp, ec);
        // A full disk, a file-size limit, a directory gone: no more writes, the RAM tier goes on.
        warn_(std::string("prefix cache: cannot write to ") + dir_ + " (" + e.what() +
              "); snapshots stay in RAM from now on");
      }
      lock.lock();
      if (ok) {
        disk_[key] = {final_path.string(), bytes.size(), ++use_counter_};
        ++stats_.disk_written;
      } else {
        stats_.disk_bytes -= bytes.size();
        writing_enabled_ = false;
      }
    }
    writing_ = false;
    written_cv_.notify_all();
  }
}

void PrefixCache::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  written_cv_.wait(lock, [&] { return to_write_.empty() && !writing_; });
}

PrefixCache::~PrefixCache() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  write_cv_.notify_one();
  writer_.join();
}

}  // namespace dsv4
