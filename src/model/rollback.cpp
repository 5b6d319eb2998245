// Model::mark and Model::rollback (see model.h). A rollback to position T restores the window
// slots of the dropped positions, and gives each compressor back its pending rows and entry
// count at the mark, then absorbs again the logged input rows of the kept positions: a
// compressor's state after T depends only on the rows of the positions before T, so this is
// exactly the state feeding the kept tokens alone leaves (the same function on the same rows).
#include <algorithm>

#include "core/check.h"
#include "model/compressor.h"
#include "model/model.h"

namespace dsv4 {

namespace {

void start_log(CompressorState& s) {
  s.logging = true;
  s.log.clear();
}

// The state at the mark, then the first `keep` logged rows absorbed again at positions from.
void rewind(const CompressorWeights& w, const std::vector<float>& kv, const std::vector<float>& score, size_t entries,
            long long from, int keep, const Rope& rope, float eps, CompressedRounding rounding, bool act_quant,
            CompressorState& s) {
  s.logging = false;
  const size_t width = s.kv.size() / ((w.overlap ? 2 : 1) * w.ratio);
  std::vector<float> kept_kv(static_cast<size_t>(keep) * width), kept_score(kept_kv.size());
  for (int t = 0; t < keep; ++t) {
    const float* row = s.log.data() + static_cast<size_t>(t) * 2 * width;
    std::copy_n(row, width, kept_kv.begin() + static_cast<size_t>(t) * width);
    std::copy_n(row + width, width, kept_score.begin() + static_cast<size_t>(t) * width);
  }
  s.log.clear();
  s.kv = kv;
  s.score = score;
  s.entries.resize(entries);
  if (keep > 0) compressor_absorb(w, kept_kv.data(), kept_score.data(), keep, from, rope, eps, rounding, act_quant, s);
}

}  // namespace

SessionMark Model::mark(Session& s, int max_tokens) const {
  DSV4_CHECK(max_tokens >= 1 && max_tokens <= cfg_.sliding_window, "a speculative step of ", max_tokens,
             " tokens: at least 1 and at most the window (", cfg_.sliding_window, ")");
  SessionMark m;
  m.pos = s.pos;
  m.max_tokens = max_tokens;
  const int win = cfg_.sliding_window;
  for (LayerCache& cache : s.layers) {
    SessionMark::Layer l;
    l.ring = KvRows(cache.window.format(), cache.window.dim(), cache.window.rope_dim());
    l.ring.resize(max_tokens);
    for (int t = 0; t < max_tokens; ++t) l.ring.copy_row(t, cache.window, (s.pos + t) % win);
    if (!cache.compressor.kv.empty()) {
      l.kv = cache.compressor.kv;
      l.score = cache.compressor.score;
      l.entries = cache.compressor.entries.size();
      start_log(cache.compressor);
    }
    if (!cache.indexer.kv.empty()) {
      l.index_kv = cache.indexer.kv;
      l.index_score = cache.indexer.score;
      l.index_entries = cache.indexer.entries.size();
      start_log(cache.indexer);
    }
    m.layers.push_back(std::move(l));
  }
  return m;
}

void Model::rollback(Session& s, const SessionMark& m, long long to_pos) const {
  DSV4_CHECK(m.layers.size() == s.layers.size() && s.pos >= m.pos && s.pos - m.pos <= m.max_tokens,
             "rollback: the session went ", s.pos - m.pos, " tokens past its mark of at most ", m.max_tokens);
  DSV4_CHECK(to_pos >= m.pos && to_pos <= s.pos, "rollback to position ", to_pos, ", outside ", m.pos, " .. ", s.pos);
  const int win = cfg_.sliding_window, keep = static_cast<int>(to_pos - m.pos);
  const float eps = cfg_.rms_norm_eps;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    LayerCache& cache = s.layers[l];
    const SessionMark::Layer& ml = m.layers[l];
    const BlockWeights& b = w_->layers[l];
    for (long long p = to_pos; p < s.pos; ++p) cache.window.copy_row(p % win, ml.ring, p - m.pos);
    const Rope& rope = rope_for(b.compress_ratio);
    if (b.attn.compressor) {
      if (to_pos < s.pos)
        rewind(*b.attn.compressor, ml.kv, ml.score, ml.entries, m.pos, keep, rope, eps, CompressedRounding::fp8_nope,
               opts_.act_quant, cache.compressor);
      cache.compressor.logging = false;
      cache.compressor.log.clear();
    }
    if (b.attn.indexer) {
      if (to_pos < s.pos)
        rewind(b.attn.indexer->compressor, ml.index_kv, ml.index_score, ml.index_entries, m.pos, keep, rope, eps,
               CompressedRounding::hadamard_fp4, opts_.act_quant, cache.indexer);
      cache.indexer.logging = false;
      cache.indexer.log.clear();
    }
  }
  s.pos = to_pos;
}

}  // namespace dsv4
