// Prefix cache: snapshots of sessions at fixed token boundaries, keyed by the tokens that led to
// them, so that a new prompt starting with a cached prefix prefills only the rest.
//
// Boundaries are multiples of snapshot_unit(): the least common multiple of the compression
// ratios (128 for V4-Flash and V4-Pro). There every compressor has just pooled a block, so a
// snapshot's pending rows are a whole block's and nothing is half-absorbed; the window ring and
// the entries are the session's as they are (a Session is a plain value in dsv4's packed form:
// model/kv_cache.h). A restored session is the session that prefilled the prefix, so what
// follows is bit for bit what a cold prefill gives (chunking invariance, tested).
//
// Which boundaries of a prompt are kept (wanted()): every multiple of the stride (a multiple
// of the unit near 1024 tokens), so prompts sharing a long head (a system prompt, tool schemas)
// find it; and the prompt's last boundary, so a conversation resent with a new turn finds all
// but its last < unit tokens. The cache holds at most budget bytes (the sessions' sizes),
// least recently used first out, and is shared by every conversation of an engine.
//
// Speculative generations keep their drafter's context with the session, under their own keys
// (a snapshot without it cannot start a drafter): DSpark's rings (DsparkState); MTP's cache is
// in the session, but the MTP layer took position b - 1 with the token after it, so an MTP
// snapshot at b is keyed by the b + 1 tokens that made it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "model/dspark.h"
#include "model/model.h"
#include "runtime/snapshot_file.h"
#include "runtime/speculative.h"

namespace dsv4 {

struct PrefixCacheStats {
  long long hits = 0, misses = 0;     // lookups that found a prefix / none
  long long disk_hits = 0;            // of the hits, read from the disk tier
  long long tokens_reused = 0;        // prompt tokens the hits saved from prefill
  long long stored = 0, evictions = 0;
  size_t entries = 0, bytes = 0, budget = 0;
  // The disk tier (none: all 0): files written, evicted, and found bad (skipped: truncated,
  // corrupt, another checkpoint's or format version's).
  long long disk_written = 0, disk_evictions = 0, disk_bad = 0;
  size_t disk_entries = 0, disk_bytes = 0, disk_budget = 0;
};

// Bytes a session's caches hold (main layers and MTP).
size_t session_bytes(const Session& s);

class PrefixCache {
 public:
  // budget: bytes of sessions held in RAM at most (> 0); unit: the snapshot boundary
  // (snapshot_unit()).
  PrefixCache(size_t budget, int unit);
  ~PrefixCache();  // waits for the disk writes under way
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The disk tier: every snapshot kept is also written to dir (in the background, through a
  // temporary file renamed into place), at most disk_budget bytes of files, least recently used
  // out first (room is made before a file is written; one larger than the budget is not);
  // what dir already holds for this model (fingerprint: snapshot_file.h) is found now, and
  // read when a prompt needs it. A file that is truncated, corrupt, of another checkpoint or
  // format version gets one line through warn and is removed, never used; so is a temporary
  // file a killed process left. A directory that cannot be made or written to, or a write that
  // fails (a full disk), leaves the cache in RAM with a warning: false when attaching failed.
  // fingerprint: snapshot_fingerprint(m), which the caller may have already.
  bool attach_disk(const std::string& dir, size_t disk_budget, const Model& m, uint64_t fingerprint,
                   std::function<void(const std::string&)> warn);
  // Blocks until every snapshot stored so far is on disk (tests, shutdown).
  void flush();

  // The least common multiple of the model's compression ratios (1 when it has none) times
  // the smallest factor that makes it at least 16 tokens (a snapshot per handful of tokens
  // would cost more to copy than to prefill).
  static int snapshot_unit(const ModelConfig& c);

  int unit() const { return unit_; }
  int stride() const { return stride_; }

  // Whether a prompt of prompt_len tokens keeps a snapshot at pos (pos > 0) for a generation
  // drafting in mode (MTP: only before the prompt's end, where the next token is known).
  bool wanted(size_t pos, size_t prompt_len, SpecMode mode = SpecMode::off) const;
  // The first position after pos that wanted() keeps, or 0 when none is left in the prompt.
  size_t next_wanted(size_t pos, size_t prompt_len, SpecMode mode = SpecMode::off) const;

  // The longest prefix of prompt cached for mode (in RAM or on disk), shorter than the prompt
  // (a token must be left to feed) and longer than at_least: its length, with the session's
  // caches copied into out (id and lease, the mirror's, stay out's) and DSpark's context into
  // dspark. 0 (out and dspark untouched) when there is none.
  size_t restore(std::span<const int> prompt, size_t at_least, Session& out, SpecMode mode = SpecMode::off,
                 DsparkState* dspark = nullptr);
  // Keeps a copy of s, which consumed the first s.pos tokens of prompt (a multiple of unit();
  // MTP: the prompt has the token after them), and of DSpark's context (mode dspark).
  void store(std::span<const int> prompt, const Session& s, SpecMode mode = SpecMode::off,
             const DsparkState* dspark = nullptr);

  PrefixCacheStats stats() const;

 private:
  struct Entry {
    uint64_t key;
    std::shared_ptr<const Snapshot> snap;  // shared with a disk write under way
    size_t bytes;
  };
  struct DiskFile {
    std::string path;
    size_t bytes;
    uint64_t last_use;  // a counter: higher is more recent
  };
  void evict_to(size_t budget);  // holding mu_
  void insert(uint64_t key, std::shared_ptr<const Snapshot> snap);  // holding mu_
  // The snapshot of key on disk when it holds it and it is sound (else reported, dropped).
  std::shared_ptr<const Snapshot> read_disk(uint64_t key, const DsparkState* dspark_layout);  // holding mu_
  void write_loop();
  void drop_bad(const std::string& path, const std::string& why);  // holding mu_
  void evict_disk_to(size_t budget);                               // holding mu_

  const size_t budget_;
  const int unit_, stride_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<uint64_t, std::list<Entry>::iterator> by_key_;
  PrefixCacheStats stats_;

  // The disk tier.
  std::string dir_;
  size_t disk_budget_ = 0;
  const Model* model_ = nullptr;
  uint64_t fingerprint_ = 0, use_counter_ = 0;
  std::function<void(const std::string&)> warn_;
  std::unordered_map<uint64_t, DiskFile> disk_;  // by key
  std::deque<std::pair<uint64_t, std::shared_ptr<const Snapshot>>> to_write_;
  bool writing_ = false, stop_ = false;
  bool writing_enabled_ = false;  // a disk tier that has not failed
  std::condition_variable write_cv_, written_cv_;
  std::thread writer_;
};

}  // namespace dsv4
