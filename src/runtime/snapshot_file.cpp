#include "runtime/snapshot_file.h"

#include <xxhash.h>

#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/read_file.h"
#include "dist/comm.h"

namespace dsv4 {

namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'N', 'A', 'P'};
// Far above any real count: a corrupt count fails here, not in an allocation.
constexpr uint64_t kMaxCount = uint64_t{1} << 40;

class SnapshotWriter {
 public:
  explicit SnapshotWriter(std::string& out) : out_(out) {}
  template <typename T>
  void put(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <typename T>
  void put_span(std::span<const T> v) {
    if (!v.empty()) out_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
  }
  void floats(std::span<const float> v) {
    put<uint64_t>(v.size());
    put_span(v);
  }
  void rows(const KvRows& r) {
    put<uint8_t>(static_cast<uint8_t>(r.format()));
    put<int32_t>(r.dim());
    put<int32_t>(r.rope_dim());
    put<uint64_t>(r.size());
    put_span(r.stored_codes());
    put_span(r.stored_scales());
    put_span(r.stored_floats());
  }
  void compressor(const CompressorState& c) {
    floats(c.kv);
    floats(c.score);
    rows(c.entries);
  }
  void layers(const std::vector<LayerCache>& ls) {
    put<uint32_t>(static_cast<uint32_t>(ls.size()));
    for (const LayerCache& l : ls) {
      rows(l.window);
      compressor(l.compressor);
      compressor(l.indexer);
    }
  }

 private:
  std::string& out_;
};

// Reads what SnapshotWriter wrote, checking every size against what is left and against the layout
// expected (a fresh session's), so that a bad file is an Error, never a crash.
class SnapshotReader {
 public:
  SnapshotReader(std::string_view in, const std::string& what) : in_(in), what_(what) {}
  template <typename T>
  T get() {
    T v;
    std::memcpy(&v, take(sizeof v), sizeof v);
    return v;
  }
  // n values of T, copied out (the bytes need not be aligned for T).
  template <typename T>
  std::vector<T> get_vector(uint64_t n) {
    DSV4_CHECK(n < kMaxCount, what_, ": a count of ", n, " (corrupt)");
    const char* p = take(n * sizeof(T));
    std::vector<T> v(n);
    if (n > 0) std::memcpy(v.data(), p, n * sizeof(T));  // an empty vector's data() may be null
    return v;
  }
  std::vector<float> floats(size_t expected, const char* name) {
    const uint64_t n = get<uint64_t>();
    DSV4_CHECK(n == expected, what_, ": ", name, " has ", n, " values, the model's ", expected);
    return get_vector<float>(n);
  }
  struct Layout {
    uint8_t format;
    int32_t dim, rope;
  };
  Layout layout() {
    Layout l{get<uint8_t>(), 0, 0};
    l.dim = get<int32_t>();
    l.rope = get<int32_t>();
    return l;
  }
  void rows(KvRows& r, const char* name) {  // r: the expected layout, any number of rows
    const Layout l = layout();
    DSV4_CHECK(l.format == static_cast<uint8_t>(r.format()) && l.dim == r.dim() && l.rope == r.rope_dim(), what_,
               ": ", name, " rows of format ", int{l.format}, ", width ", l.dim, " (", l.rope,
               " rope) where the model has ", static_cast<int>(r.format()), ", ", r.dim(), " (", r.rope_dim(), ")");
    body(r, name);
  }
  // Rows of the layout the bytes name (a valid one: KvRows checks it).
  KvRows new_rows(const char* name) {
    const Layout l = layout();
    DSV4_CHECK(l.format <= static_cast<uint8_t>(KvFormat::fp4) && l.dim > 0 && l.dim <= (1 << 20) && l.rope >= 0,
               what_, ": ", name, " of format ", int{l.format}, ", width ", l.dim, " (", l.rope, " rope)");
    KvRows r(static_cast<KvFormat>(l.format), l.dim, l.rope);
    body(r, name);
    return r;
  }
  void body(KvRows& r, const char* name) {
    const uint64_t n = get<uint64_t>();
    DSV4_CHECK(n < kMaxCount, what_, ": ", name, " has ", n, " rows (corrupt)");
    KvRows one = r;
    one.resize(1);
    const size_t nc = one.stored_codes().size(), ns = one.stored_scales().size(), nf = one.stored_floats().size();
    const std::vector<uint8_t> codes = get_vector<uint8_t>(n * nc), scales = get_vector<uint8_t>(n * ns);
    r.assign_stored(n, codes, scales, get_vector<float>(n * nf));
  }
  void compressor(CompressorState& c, const char* name) {
    c.kv = floats(c.kv.size(), name);
    c.score = floats(c.score.size(), name);
    rows(c.entries, name);
  }
  void layers(std::vector<LayerCache>& ls, const char* name) {
    const auto n = get<uint32_t>();
    DSV4_CHECK(n == ls.size(), what_, ": ", n, " ", name, " where the model has ", ls.size());
    for (LayerCache& l : ls) {
      rows(l.window, "a window");
      compressor(l.compressor, "a compressor");
      compressor(l.indexer, "an indexer");
    }
  }
  bool done() const { return in_.empty(); }

 private:
  const char* take(size_t n) {
    DSV4_CHECK(n <= in_.size(), what_, ": truncated (", n, " bytes wanted, ", in_.size(), " left)");
    const char* p = in_.data();
    in_.remove_prefix(n);
    return p;
  }
  std::string_view in_;
  const std::string& what_;
};

uint64_t hash_bytes(const void* p, size_t n, uint64_t seed) { return XXH3_64bits_withSeed(p, n, seed); }

}  // namespace

uint64_t snapshot_fingerprint(const Model& m) {
  const Checkpoint& ck = m.checkpoint();
  const std::string config = read_file((std::filesystem::path(ck.dir()) / "config.json").string());
  uint64_t h = hash_bytes(config.data(), config.size(), kSnapshotVersion);
  for (const auto& [name, t] : ck.tensors()) {
    h = hash_bytes(name.data(), name.size(), h);
    const int64_t meta[2] = {static_cast<int64_t>(t->dtype), static_cast<int64_t>(t->nbytes)};
    h = hash_bytes(meta, sizeof meta, h);
    h = hash_bytes(t->shape.data(), t->shape.size() * sizeof(long long), h);
    const size_t edge = std::min<size_t>(t->nbytes, 4096);
    h = hash_bytes(t->data, edge, h);
    h = hash_bytes(t->data + t->nbytes - edge, edge, h);
  }
  const int64_t settings[4] = {m.act_quant(), ck.layout().rank, ck.layout().world, Comm::get().world()};
  return hash_bytes(settings, sizeof settings, h);
}

std::string encode_snapshot(const Snapshot& s, uint64_t fingerprint) {
  std::string payload;
  SnapshotWriter w(payload);
  w.put<uint32_t>(static_cast<uint32_t>(s.mode));
  w.put<uint64_t>(s.tokens.size());
  w.put_span(std::span<const int>(s.tokens));
  w.put<int64_t>(s.session.pos);
  w.put<int64_t>(s.session.mtp_pos);
  w.layers(s.session.layers);
  w.layers(s.session.mtp);
  w.put<uint32_t>(static_cast<uint32_t>(s.dspark.rings.size()));
  for (const KvRows& r : s.dspark.rings) w.rows(r);
  w.put<int64_t>(s.dspark.pos);
  w.put<uint64_t>(s.meta.size());
  w.put_span(std::span<const char>(s.meta));

  std::string out;
  out.reserve(kSnapshotHeaderBytes + payload.size());
  SnapshotWriter h(out);
  h.put_span(std::span<const char>(kMagic, 8));
  h.put<uint32_t>(kSnapshotVersion);
  h.put<uint32_t>(0);
  h.put<uint64_t>(fingerprint);
  h.put<uint64_t>(payload.size());
  h.put<uint64_t>(hash_bytes(payload.data(), payload.size(), 0));
  h.put<uint64_t>(0);
  out += payload;
  return out;
}

bool same_layout(const DsparkState& a, const DsparkState& b) {
  if (a.rings.size() != b.rings.size()) return false;
  for (size_t i = 0; i < a.rings.size(); ++i)
    if (a.rings[i].format() != b.rings[i].format() || a.rings[i].dim() != b.rings[i].dim() ||
        a.rings[i].rope_dim() != b.rings[i].rope_dim())
      return false;
  return true;
}

SnapshotHeader read_snapshot_header(std::string_view bytes, const std::string& what) {
  DSV4_CHECK(bytes.size() >= kSnapshotHeaderBytes && std::memcmp(bytes.data(), kMagic, 8) == 0, what,
             ": not a dsv4 snapshot");
  SnapshotReader r(bytes.substr(8, kSnapshotHeaderBytes - 8), what);
  const auto version = r.get<uint32_t>();
  DSV4_CHECK(version == kSnapshotVersion, what, ": snapshot format version ", version, ", this dsv4 reads ",
             kSnapshotVersion);
  r.get<uint32_t>();
  SnapshotHeader h;
  h.fingerprint = r.get<uint64_t>();
  h.payload_bytes = r.get<uint64_t>();
  h.checksum = r.get<uint64_t>();
  return h;
}

Snapshot decode_snapshot(std::string_view bytes, uint64_t fingerprint, const Model& m, const std::string& what) {
  const SnapshotHeader h = read_snapshot_header(bytes, what);
  DSV4_CHECK(h.fingerprint == fingerprint, what,
             ": made by another checkpoint or other settings (activation rounding, model-parallel ranks)");
  const std::string_view payload = bytes.substr(kSnapshotHeaderBytes);
  DSV4_CHECK(payload.size() == h.payload_bytes, what, ": truncated (", payload.size(), " of ", h.payload_bytes,
             " payload bytes)");
  DSV4_CHECK(hash_bytes(payload.data(), payload.size(), 0) == h.checksum, what, ": corrupt (checksum mismatch)");

  SnapshotReader r(payload, what);
  Snapshot s;
  const auto mode = r.get<uint32_t>();
  DSV4_CHECK(mode <= static_cast<uint32_t>(SpecMode::dspark), what, ": drafting mode ", mode);
  s.mode = static_cast<SpecMode>(mode);
  s.tokens = r.get_vector<int>(r.get<uint64_t>());
  for (size_t i = 0; i < s.tokens.size(); ++i)
    DSV4_CHECK(s.tokens[i] >= 0 && s.tokens[i] < m.config().vocab_size, what, ": token ", s.tokens[i], " at ", i,
               " is outside the vocabulary");
  s.session = m.new_session();
  s.session.pos = r.get<int64_t>();
  s.session.mtp_pos = r.get<int64_t>();
  DSV4_CHECK(s.session.pos >= 0 && s.session.mtp_pos >= 0 && s.session.mtp_pos <= s.session.pos, what,
             ": positions ", s.session.pos, " and ", s.session.mtp_pos, " (MTP)");
  r.layers(s.session.layers, "layers");
  r.layers(s.session.mtp, "MTP layers");
  const auto n_rings = r.get<uint32_t>();
  DSV4_CHECK(s.mode == SpecMode::dspark || n_rings == 0, what, ": ", n_rings, " DSpark rings in a snapshot of mode ",
             spec_mode_name(s.mode));
  DSV4_CHECK(n_rings <= 64, what, ": ", n_rings, " DSpark rings (corrupt)");
  for (uint32_t i = 0; i < n_rings; ++i) s.dspark.rings.push_back(r.new_rows("a DSpark ring"));
  s.dspark.pos = r.get<int64_t>();
  const std::vector<char> meta = r.get_vector<char>(r.get<uint64_t>());
  s.meta.assign(meta.begin(), meta.end());
  DSV4_CHECK(r.done(), what, ": bytes after the snapshot");
  return s;
}

}  // namespace dsv4
