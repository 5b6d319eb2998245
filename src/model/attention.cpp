// Attention: projections through linear(), then per token a softmax over its keys in a fixed
// order (window by position, then compressed entries by index), so a token's result is the
// same in a prefill and in a decode step. Keys stored packed in the cache are unpacked once
// (bit for bit) into float rows: the window ring and, for HCA, the entries once per call; a
// CSA token's chosen entries once per token; then all heads of the token share them (one kv
// head serves every query head). The inner products are ops/dot.h: one reduction order per
// element whatever the blocking, so tokens may be split over threads (prefill) or a token's
// heads may be (decode) with the same result.
#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "dist/comm.h"
#include "model/compressor.h"
#include "model/indexer.h"
#include "ops/dot.h"
#include "ops/norm.h"
#include "quant/act_quant.h"

namespace dsv4 {

void layer_cache_init(const BlockWeights& b, const ModelConfig& c, bool act_quant, LayerCache& cache) {
  const int rd = c.qk_rope_head_dim;
  const KvFormat kv = act_quant ? KvFormat::fp8_nope : KvFormat::f32;
  cache.window = KvRows(kv, c.head_dim, rd);
  cache.window.resize(c.sliding_window);
  cache.compressor = {};
  cache.indexer = {};
  if (b.attn.compressor) compressor_init(*b.attn.compressor, kv, rd, cache.compressor);
  if (b.attn.indexer)
    compressor_init(b.attn.indexer->compressor, act_quant ? KvFormat::fp4 : KvFormat::f32, rd, cache.indexer);
}

// Heads [h0, h1) of one token at position pos: q [H, D] -> o [H, D] (rows h0 .. h1 - 1 written).
// scores [h1 - h0, n_keys] and sums [h1 - h0] are scratch. The sink takes probability mass and
// adds no value.
void attend_heads(const float* q, int h0, int h1, std::span<const float* const> keys, int D, float scale,
                  std::span<const float> attn_sink, const Rope& rope, long long pos, std::vector<float>& scores,
                  std::vector<float>& sums, float* o) {
  const int nh = h1 - h0, nk = static_cast<int>(keys.size()), rd = rope.dim();
  scores.resize(static_cast<size_t>(nh) * nk);
  sums.resize(nh);
  dot_rows(q + static_cast<size_t>(h0) * D, nh, keys.data(), nk, D, scores.data());
  for (int i = 0; i < nh; ++i) {
    float* p = scores.data() + static_cast<size_t>(i) * nk;
    float mx = -INFINITY;
    for (int j = 0; j < nk; ++j) mx = std::max(mx, p[j] *= scale);
    float sum = 0;
    for (int j = 0; j < nk; ++j) sum += (p[j] = std::exp(p[j] - mx));
    sums[i] = sum + std::exp(attn_sink[h0 + i] - mx);
  }
  float* oh = o + static_cast<size_t>(h0) * D;
  weighted_rows(scores.data(), nh, keys.data(), nk, D, oh);  // unnormalised: sum_j p[j] * key[j]
  for (int i = 0; i < nh; ++i, oh += D) {
    for (int d = 0; d < D; ++d) oh[d] /= sums[i];
    rope.apply(oh + D - rd, pos, /*inverse=*/true);
  }
}

namespace {

// One session's n rows at pos0: q [n, H, D] and kv [n, D] of its tokens, chosen [n] the
// indexer's picks (CSA) -> o [n, H, D]; then its kv enters the window ring.
void attend_session(const AttentionWeights& w, int ratio, const ModelConfig& c, const Rope& rope, int H,
                    const float* q, const float* kv, const std::vector<int>* chosen, int n, long long pos0,
                    LayerCache& cache, float* o) {
  const int D = c.head_dim, win = c.sliding_window;
  // Unpacked once per call: the ring rows of the positions before this chunk that its tokens
  // see ([win, D], by slot), and for HCA every entry the last token sees ([n_entries, D]).
  const KvRows& entries = cache.compressor.entries;
  std::vector<float> ring(static_cast<size_t>(win) * D);
  const long long ring_from = std::max(0LL, pos0 - win + 1);
  pool().parallel_for(static_cast<size_t>(pos0 - ring_from), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const long long slot = (ring_from + static_cast<long long>(i)) % win;
      cache.window.load(slot, ring.data() + slot * D);
    }
  });
  std::vector<float> hca(ratio > 4 ? entries.size() * D : 0);
  if (ratio > 4)
    pool().parallel_for(entries.size(), [&](size_t b0, size_t b1) {
      for (size_t b = b0; b < b1; ++b) entries.load(b, hca.data() + b * D);
    });

  // Token t's keys: window positions (this chunk's kv, or the ring), then compressed entries
  // (HCA: every complete block; CSA: the indexer's choice, unpacked into csa_rows).
  auto token_keys = [&](size_t t, std::vector<const float*>& keys, std::vector<float>& csa_rows,
                        bool parallel_unpack) {
    const long long pos = pos0 + static_cast<long long>(t);
    keys.clear();
    for (long long kp = std::max(0LL, pos - win + 1); kp <= pos; ++kp)
      keys.push_back(kp >= pos0 ? kv + (kp - pos0) * D : ring.data() + (kp % win) * D);
    if (ratio == 4) {
      const std::vector<int>& ch = chosen[t];
      csa_rows.resize(ch.size() * D);
      auto unpack = [&](size_t i0, size_t i1) {
        for (size_t i = i0; i < i1; ++i) entries.load(ch[i], csa_rows.data() + i * D);
      };
      if (parallel_unpack) pool().parallel_for(ch.size(), unpack);
      else unpack(0, ch.size());
      for (size_t i = 0; i < ch.size(); ++i) keys.push_back(csa_rows.data() + i * D);
    } else if (ratio > 0) {
      for (long long b = 0; b < (pos + 1) / ratio; ++b) keys.push_back(hca.data() + b * D);
    }
  };

  // Attention per (token, head): tokens over threads when there are enough of them (prefill),
  // else one token at a time with its heads over threads (decode).
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto q_of = [&](size_t t) { return q + t * H * D; };
  auto o_of = [&](size_t t) { return o + t * H * D; };
  if (n >= pool().size()) {
    pool().parallel_for(static_cast<size_t>(n), [&](size_t t0, size_t t1) {
      std::vector<const float*> keys;
      std::vector<float> csa_rows, scores, sums;
      for (size_t t = t0; t < t1; ++t) {
        token_keys(t, keys, csa_rows, false);
        attend_heads(q_of(t), 0, H, keys, D, scale, w.attn_sink, rope, pos0 + static_cast<long long>(t), scores, sums,
               o_of(t));
      }
    });
  } else {
    std::vector<const float*> keys;
    std::vector<float> csa_rows;
    for (size_t t = 0; t < static_cast<size_t>(n); ++t) {
      token_keys(t, keys, csa_rows, true);
      pool().parallel_for(static_cast<size_t>(H), [&](size_t h0, size_t h1) {
        std::vector<float> scores, sums;
        attend_heads(q_of(t), static_cast<int>(h0), static_cast<int>(h1), keys, D, scale, w.attn_sink, rope,
               pos0 + static_cast<long long>(t), scores, sums, o_of(t));
      });
    }
  }

  // The ring keeps the last `win` positions.
  for (int t = std::max(0, n - win); t < n; ++t)
    cache.window.store((pos0 + t) % win, std::span<const float>(kv + static_cast<size_t>(t) * D, D));
}

}  // namespace

void attention_kv(const AttentionWeights& w, const ModelConfig& c, const Rope& rope, std::span<const float> x,
                  std::span<const long long> pos, bool act_quant, std::vector<float>& kv, AttentionSaved* saved) {
  const int D = c.head_dim, rd = c.qk_rope_head_dim, n = static_cast<int>(pos.size());
  kv.assign(static_cast<size_t>(n) * D, 0.0f);
  linear(w.wkv, x, n, kv, act_quant);
  if (saved) saved->kva = kv;
  rmsnorm(kv, w.kv_norm, c.rms_norm_eps, D, kv);
  for (int t = 0; t < n; ++t) {
    float* k = kv.data() + static_cast<size_t>(t) * D;
    rope.apply(k + D - rd, pos[t]);
    if (act_quant) fp8_roundtrip(std::span<float>(k, D - rd), 64);
  }
}

void attention_project(const AttentionWeights& w, const ModelConfig& c, const Rope& rope, std::span<const float> x,
                       std::span<const long long> pos, bool act_quant, std::vector<float>& qr, std::vector<float>& q,
                       std::vector<float>& kv, AttentionSaved* saved) {
  const int D = c.head_dim, rd = c.qk_rope_head_dim, H = w.wq_b.out / D;
  const int eps_dim = c.q_lora_rank;
  const int n = static_cast<int>(pos.size());
  const float eps = c.rms_norm_eps;
  // q: [n, H, D]
  qr.assign(static_cast<size_t>(n) * eps_dim, 0.0f);
  linear(w.wq_a, x, n, qr, act_quant);
  if (saved) saved->qa = qr;
  rmsnorm(qr, w.q_norm, eps, eps_dim, qr);
  q.assign(static_cast<size_t>(n) * H * D, 0.0f);
  linear(w.wq_b, qr, n, q, act_quant);
  if (saved) saved->qb = q;
  rmsnorm(q, {}, eps, D, q);
  pool().parallel_for(static_cast<size_t>(n) * H, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) rope.apply(q.data() + i * D + D - rd, pos[i / H]);  // i: (row, head)
  });

  attention_kv(w, c, rope, x, pos, act_quant, kv, saved);
}

void attention_output(const AttentionWeights& w, const ModelConfig& c, std::span<const float> o, int n, bool act_quant,
                      std::span<float> out, AttentionSaved* saved) {
  const int D = c.head_dim, H = w.wq_b.out / D;
  // Grouped low-rank output: group g of o ([H / G * D]) times wo_a rows [g*R, (g+1)*R).
  const int R = c.o_lora_rank, G = w.wo_a.out / R, gw = c.num_attention_heads / c.o_groups * D;
  std::vector<float> og(static_cast<size_t>(n) * gw), low(static_cast<size_t>(n) * G * R), part(static_cast<size_t>(n) * R);
  for (int g = 0; g < G; ++g) {
    for (int t = 0; t < n; ++t)
      std::copy_n(o.data() + static_cast<size_t>(t) * H * D + static_cast<size_t>(g) * gw, gw,
                  og.data() + static_cast<size_t>(t) * gw);
    linear(w.wo_a, og, n, part, /*quantize_input=*/false, g * R, R);
    for (int t = 0; t < n; ++t)
      std::copy_n(part.data() + static_cast<size_t>(t) * R, R,
                  low.data() + static_cast<size_t>(t) * G * R + static_cast<size_t>(g) * R);
  }
  if (saved) saved->low = low;
  const Comm& comm = Comm::get();
  if (H == c.num_attention_heads || w.wo_b.in == G * R) {
    linear(w.wo_b, low, n, out, act_quant);
    // Heads divided among the ranks, wo_b by its input: the ranks' parts add up. (All heads
    // here: every rank computed the whole output.)
    if (H != c.num_attention_heads) comm.all_reduce_sum(out);
    return;
  }
  // wo_b whole on every rank (its input does not split into whole scale blocks): gather every
  // rank's groups ([world][n][G * R] -> [n][world * G * R], rank order = group order) instead.
  std::vector<float> gathered(low.size() * comm.world()), all(gathered.size());
  comm.all_gather(low, gathered);
  const size_t width = static_cast<size_t>(G) * R;
  for (int r = 0; r < comm.world(); ++r)
    for (int t = 0; t < n; ++t)
      std::copy_n(gathered.data() + (static_cast<size_t>(r) * n + t) * width, width,
                  all.data() + (static_cast<size_t>(t) * comm.world() + r) * width);
  linear(w.wo_b, all, n, out, act_quant);
}

void attention_forward(const AttentionWeights& w, int ratio, const ModelConfig& c, const Rope& rope,
                       std::span<const float> x, std::span<const Segment> segs, bool act_quant,
                       std::span<float> out) {
  // H: this rank's heads (all of them in one process; a model-parallel rank holds H / world
  // rows of wq_b and the matching output groups of wo_a).
  const int D = c.head_dim, H = w.wq_b.out / D;
  const int n = static_cast<int>(x.size() / c.hidden_size);
  const float eps = c.rms_norm_eps;
  // Row t of the step is token t - row0 of its segment.
  std::vector<long long> pos(n);
  for (const Segment& sg : segs)
    for (int t = 0; t < sg.n; ++t) pos[sg.row0 + t] = sg.pos0 + t;

  std::vector<float> qr, q, kv;
  attention_project(w, c, rope, x, pos, act_quant, qr, q, kv);

  // Compressed entries (appended as blocks complete) and the indexer's choice per token.
  std::vector<std::vector<int>> chosen;
  if (w.indexer) chosen = indexer_forward(*w.indexer, c, x, qr, segs, pos, rope, act_quant);
  if (w.compressor) {
    std::vector<float> ckv, cscore;
    compressor_project(*w.compressor, x, n, ckv, cscore);
    const size_t width = ckv.size() / n;
    for_each_segment(segs, [&](const Segment& sg) {
      compressor_absorb(*w.compressor, ckv.data() + sg.row0 * width, cscore.data() + sg.row0 * width, sg.n,
                        sg.pos0, rope, eps, CompressedRounding::fp8_nope, act_quant, sg.cache->compressor);
    });
  }

  std::vector<float> o(static_cast<size_t>(n) * H * D);
  for_each_segment(segs, [&](const Segment& sg) {
    const size_t r = static_cast<size_t>(sg.row0);
    attend_session(w, ratio, c, rope, H, q.data() + r * H * D, kv.data() + r * D,
                   chosen.empty() ? nullptr : chosen.data() + r, sg.n, sg.pos0, *sg.cache, o.data() + r * H * D);
  });

  attention_output(w, c, o, n, act_quant, out);
}

void attention_forward(const AttentionWeights& w, int ratio, const ModelConfig& c, const Rope& rope,
                       std::span<const float> x, int n, long long pos0, bool act_quant, LayerCache& cache,
                       std::span<float> out) {
  const Segment one{0, n, pos0, &cache};
  attention_forward(w, ratio, c, rope, x, std::span<const Segment>(&one, 1), act_quant, out);
}

}  // namespace dsv4

