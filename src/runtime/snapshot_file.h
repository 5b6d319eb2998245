// A session snapshot as bytes, for the prefix cache's disk tier and saved sessions: the
// session's caches in dsv4's packed form (model/kv_cache.h, stored bytes as they are), the
// drafter's context, and the tokens that made it.
//
// Layout (little-endian): the header, 48 bytes: magic "DSV4SNAP", u32 format version, u32
// zero, u64 fingerprint (snapshot_fingerprint: the checkpoint and the settings that change
// the numbers), u64 payload bytes, u64 XXH3-64 of the payload, u64 zero; then the payload:
// u32 mode, u64 token count, the tokens (i32), the session (i64 pos, i64 mtp_pos, the main
// layers' and the MTP layers' caches, each a u32 count then per layer its window, compressor
// and indexer), DSpark's rings (u32 count, each as a window) and position, and the caller's
// meta text (u64 length, bytes: a saved chat's messages). Rows: u8 format, i32 dim, i32
// rope_dim, u64 rows, then the codes, scales and floats; float vectors: u64 count then the
// values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/dspark.h"
#include "model/model.h"
#include "runtime/speculative.h"

namespace dsv4 {

constexpr uint32_t kSnapshotVersion = 1;

struct Snapshot {
  SpecMode mode = SpecMode::off;
  std::vector<int> tokens;
  Session session;     // its caches (id and lease are not saved)
  DsparkState dspark;  // mode dspark
  std::string meta;    // the caller's (a saved chat: its messages)
};

// Whether two DSpark contexts have the same rings (count, format and widths): a snapshot's
// must be its decoder's before it replaces it.
bool same_layout(const DsparkState& a, const DsparkState& b);

// What a snapshot's numbers depend on: config.json, every tensor's name, dtype, shape and the
// first and last 4 KiB of its bytes (two checkpoints with the same shapes differ there), the
// activation rounding and the model-parallel layout.
uint64_t snapshot_fingerprint(const Model& m);

std::string encode_snapshot(const Snapshot& s, uint64_t fingerprint);
// Throws Error starting with what (a file name) and naming the fault: not a snapshot, another
// format version, another checkpoint or settings, truncated, a checksum mismatch, or caches
// whose layout is not the model's (a fresh session's; DSpark's rings are checked by whoever
// hands them to a decoder: same_layout).
Snapshot decode_snapshot(std::string_view bytes, uint64_t fingerprint, const Model& m, const std::string& what);
// Only the header's checks (no payload read past it): for listing a directory.
struct SnapshotHeader {
  uint64_t fingerprint = 0, payload_bytes = 0, checksum = 0;
};
SnapshotHeader read_snapshot_header(std::string_view bytes, const std::string& what);
constexpr size_t kSnapshotHeaderBytes = 48;

}  // namespace dsv4
