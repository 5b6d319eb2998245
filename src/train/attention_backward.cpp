// The forward keeps every intermediate in an AttentionTape; the backward takes it (or
// recomputes it), then walks back: wo_b, wo_a per group, each (token, head) over its
// keys (and the indexer's KL loss beside it), the compressors, then the kv and q paths. The
// products run over all the batch's rows at once; the per-token part runs in fixed chunks of
// kChunk tokens of one sequence, each accumulating its sequence's key gradients in its own
// buffers, summed in chunk order afterwards (the result depends on neither timing nor the
// number of threads).
#include "train/attention_backward.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/thread_pool.h"
#include "model/attention.h"
#include "model/indexer.h"
#include "ops/rope.h"
#include "train/attention_head.h"
#include "train/indexer_backward.h"
#include "train/master_views.h"
#include "train/matmul.h"
#include "train/norm_backward.h"
#include "train/row_chunks.h"

namespace dsv4 {

namespace {

float index_weight_scale(const IndexerF32& ix) {
  return static_cast<float>(std::pow(ix.head_dim, -0.5) * std::pow(ix.heads, -0.5));
}

// The indexer's queries, weights, keys and choice of entries per token (model/indexer.h's
// choice, on queries and keys without the Hadamard rotation, which the backward would have to
// undo: a rotation of both sides, it changes no q.k). Each sequence chooses among its own
// entries; chosen holds indices into all of them.
void run_indexer(const AttentionF32& a, MasterViews& views, const Rope& rope, std::span<const float> x,
                 const Segments& seg, std::span<const long long> pos, AttentionTape& f) {
  const IndexerF32& ix = a.indexer;
  const int ih = ix.heads, id = ix.head_dim, rd = rope.dim(), n = seg.rows();
  f.iq.resize(size_t(n) * ih * id);
  linear(views.linear(ix.wq_b, ih * id, a.q_lora), f.qn, n, f.iq, false);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < ih; ++h) rope.apply(f.iq.data() + (size_t(t) * ih + h) * id + id - rd, pos[t]);
  f.iw.resize(size_t(n) * ih);
  linear(views.linear(ix.weights_proj, ih, a.dim), x, n, f.iw, false);
  const float wscale = index_weight_scale(ix);
  for (float& v : f.iw) v *= wscale;
  std::vector<CompressorState> keys;
  f.ikeys = compressor_forward_f32(views.compressor(ix.compressor), rope, a.eps, x, seg, &f.index_compressor, &keys);
  const ModelConfig c = attention_config(a, rope);
  for (int s = 0; s < seg.count(); ++s) {
    const size_t t0 = seg.start(s);
    indexer_choose(c, a.ratio, ih, f.iq.data() + t0 * ih * id, f.iw.data() + t0 * ih, seg.len(s), 0, keys[s],
                   f.chosen.data() + t0);
    const int e0 = seg.entry_start(s, a.ratio);
    for (int t = 0; t < seg.len(s); ++t)
      for (int& e : f.chosen[t0 + t]) e += e0;
  }
}

// The first kv row a token attends to: its window's, inside its own sequence.
int window_start(const AttentionF32& a, const Segments& seg, int s, int p) {
  return seg.start(s) + std::max(0, p - a.window + 1);
}

AttentionTape run_forward(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg) {
  const int H = a.heads, D = a.head_dim, n = seg.rows();
  DSV4_CHECK(x.size() == size_t(n) * a.dim, "attention: x has ", x.size(), " values for ", n, " tokens of ", a.dim);
  MasterViews views;
  const AttentionWeights w = views.attention(a);
  const ModelConfig c = attention_config(a, rope);
  const std::vector<long long> pos = seg.positions();
  AttentionTape f;
  AttentionSaved saved;
  attention_project(w, c, rope, x, pos, /*act_quant=*/false, f.qn, f.q, f.kv, &saved);
  f.qa = std::move(saved.qa), f.qb = std::move(saved.qb), f.kva = std::move(saved.kva);

  f.chosen.resize(n);
  if (a.ratio > 0)
    f.entries = compressor_forward_f32(views.compressor(a.compressor), rope, a.eps, x, seg, &f.compressor);
  if (a.ratio == 4) {
    run_indexer(a, views, rope, x, seg, pos, f);
  } else if (a.ratio > 0) {
    for (int s = 0; s < seg.count(); ++s)
      for (int p = 0; p < seg.len(s); ++p)
        for (int b = 0; b < (p + 1) / a.ratio; ++b)
          f.chosen[seg.start(s) + p].push_back(seg.entry_start(s, a.ratio) + b);
  }

  // Each token over its window rows of kv, then its chosen entries, as inference orders them.
  std::vector<int> seq_of(n);
  for (int s = 0; s < seg.count(); ++s) std::fill_n(seq_of.begin() + seg.start(s), seg.len(s), s);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  f.o.resize(size_t(n) * H * D);
  pool().parallel_for(size_t(n), [&](size_t t0, size_t t1) {
    std::vector<const float*> keys;
    std::vector<float> scores, sums;
    for (size_t t = t0; t < t1; ++t) {
      keys.clear();
      for (int k = window_start(a, seg, seq_of[t], int(pos[t])); k <= static_cast<int>(t); ++k)
        keys.push_back(f.kv.data() + size_t(k) * D);
      for (int e : f.chosen[t]) keys.push_back(f.entries.data() + size_t(e) * D);
      attend_heads(f.q.data() + t * H * D, 0, H, keys, D, scale, a.attn_sink, rope, pos[t], scores, sums,
                   f.o.data() + t * H * D);
    }
  });

  f.out.resize(size_t(n) * a.dim);
  attention_output(w, c, f.o, n, /*act_quant=*/false, f.out, &saved);
  f.low = std::move(saved.low);
  return f;
}

// The per-token part of the backward for the tokens of one chunk (one sequence's): attention
// heads over their keys, and the indexer's KL loss toward those heads' distribution over the
// chosen entries. dq, diq, diw rows are the chunk's own; dkv, dentries, dikeys (the chunk's
// sequence's rows and entries, from kv0 and e0) and dsink are this chunk's partial sums.
struct ChunkGrads {
  int seq = 0, t0 = 0, t1 = 0;  // rows [t0, t1) of sequence seq
  std::vector<float> dkv, dentries, dikeys, dsink;
  double index_loss = 0;
};

constexpr int kChunk = 64;

void token_backward(const AttentionF32& a, const Rope& rope, const AttentionTape& f, std::span<const float> d_o,
                    size_t t, int k0, long long p, int kv0, int e0, std::span<float> dq, std::span<float> diq,
                    std::span<float> diw, ChunkGrads& c, std::vector<float>& keys, std::vector<float>& dkeys) {
  const int H = a.heads, D = a.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::vector<int>& ch = f.chosen[t];
  const int nw = static_cast<int>(t) - k0 + 1;
  const int nk = nw + static_cast<int>(ch.size());
  keys.resize(size_t(nk) * D);
  std::copy_n(f.kv.begin() + size_t(k0) * D, size_t(nw) * D, keys.begin());
  for (size_t i = 0; i < ch.size(); ++i)
    std::copy_n(f.entries.begin() + size_t(ch[i]) * D, D, keys.begin() + (nw + i) * D);
  dkeys.assign(keys.size(), 0.0f);
  std::vector<double> target(ch.size(), 0.0), probs;
  for (int h = 0; h < H; ++h) {
    std::span<const float> qh = std::span<const float>(f.q).subspan((t * H + h) * D, D);
    c.dsink[h] += attention_head_backward(qh, keys, nk, D, scale, a.attn_sink[h], rope, p,
                                          d_o.subspan((t * H + h) * D, D), dq.subspan((t * H + h) * D, D), dkeys,
                                          probs);
    if (a.ratio == 4)
      for (size_t i = 0; i < ch.size(); ++i) target[i] += probs[nw + i];
  }
  for (int i = 0; i < nw; ++i)
    for (int d = 0; d < D; ++d) c.dkv[size_t(k0 - kv0 + i) * D + d] += dkeys[size_t(i) * D + d];
  for (size_t i = 0; i < ch.size(); ++i)
    for (int d = 0; d < D; ++d) c.dentries[size_t(ch[i] - e0) * D + d] += dkeys[(nw + i) * D + d];

  if (a.ratio != 4 || ch.empty()) return;
  double total = 0;
  for (double v : target) total += v;
  if (!(total > 0)) return;
  std::vector<float> tgt(ch.size());
  for (size_t i = 0; i < ch.size(); ++i) tgt[i] = static_cast<float>(target[i] / total);
  const IndexerF32& ix = a.indexer;
  const int ih = ix.heads, id = ix.head_dim, k = static_cast<int>(ch.size());
  std::vector<float> ikeys(size_t(k) * id), dik(ikeys.size(), 0.0f);
  for (int i = 0; i < k; ++i) std::copy_n(f.ikeys.begin() + size_t(ch[i]) * id, id, ikeys.begin() + size_t(i) * id);
  c.index_loss += indexer_kl_backward(std::span<const float>(f.iq).subspan(t * ih * id, size_t(ih) * id),
                                      std::span<const float>(f.iw).subspan(t * ih, ih), ih, ikeys, k, id, tgt,
                                      diq.subspan(t * ih * id, size_t(ih) * id), diw.subspan(t * ih, ih), dik);
  for (int i = 0; i < k; ++i)
    for (int d = 0; d < id; ++d) c.dikeys[size_t(ch[i] - e0) * id + d] += dik[size_t(i) * id + d];
}

}  // namespace

void attention_forward_f32(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg,
                           std::span<float> out, AttentionTape* tape) {
  AttentionTape f = run_forward(a, rope, x, seg);
  DSV4_CHECK(out.size() == f.out.size(), "attention_forward_f32: out has the wrong size");
  std::copy(f.out.begin(), f.out.end(), out.begin());
  if (tape) *tape = std::move(f);
}

std::vector<std::vector<int>> attention_entries_f32(const AttentionF32& a, const Rope& rope, std::span<const float> x,
                                                    const Segments& seg) {
  return run_forward(a, rope, x, seg).chosen;
}

double attention_backward(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg,
                          std::span<const float> dout, AttentionF32& g, std::span<float> dx,
                          const AttentionTape* tape) {
  const int dim = a.dim, H = a.heads, D = a.head_dim, R = a.o_lora, G = a.groups, gw = H / G * D, rd = rope.dim();
  const int n = seg.rows();
  DSV4_CHECK(dout.size() == size_t(n) * dim && dx.size() == size_t(n) * dim, "attention_backward: sizes do not match");
  AttentionTape recomputed;
  if (!tape) recomputed = run_forward(a, rope, x, seg);
  const AttentionTape& f = tape ? *tape : recomputed;
  DSV4_CHECK(f.out.size() == size_t(n) * dim, "attention_backward: the tape is of ", f.out.size() / dim,
             " tokens, not ", n);
  const std::vector<long long> pos = seg.positions();

  // wo_b, then wo_a per group.
  std::vector<float> dlow(f.low.size());
  linear_backward(f.low, a.wo_b, dout, n, G * R, dim, dlow, g.wo_b);
  std::vector<float> d_o(f.o.size(), 0.0f), og(size_t(n) * gw), dog(og.size()), dpart(size_t(n) * R);
  for (int grp = 0; grp < G; ++grp) {
    for (int t = 0; t < n; ++t) {
      std::copy_n(f.o.begin() + size_t(t) * H * D + size_t(grp) * gw, gw, og.begin() + size_t(t) * gw);
      std::copy_n(dlow.begin() + size_t(t) * G * R + size_t(grp) * R, R, dpart.begin() + size_t(t) * R);
    }
    std::span<float> g_rows(g.wo_a.data() + size_t(grp) * R * gw, size_t(R) * gw);
    linear_backward(og, std::span<const float>(a.wo_a).subspan(size_t(grp) * R * gw, size_t(R) * gw), dpart, n, gw,
                    R, dog, g_rows);
    for (int t = 0; t < n; ++t)
      std::copy_n(dog.begin() + size_t(t) * gw, gw, d_o.begin() + size_t(t) * H * D + size_t(grp) * gw);
  }

  // Heads over their keys, and the indexer, in fixed chunks of each sequence's tokens.
  const int ih = a.indexer.heads, id = a.indexer.head_dim, ratio = std::max(1, a.ratio);
  std::vector<float> dq(f.q.size(), 0.0f), diq(f.iq.size(), 0.0f), diw(f.iw.size(), 0.0f);
  std::vector<ChunkGrads> cg;
  for (int s = 0; s < seg.count(); ++s)
    for (int t0 = 0; t0 < seg.len(s); t0 += kChunk) {
      ChunkGrads& c = cg.emplace_back();
      c.seq = s, c.t0 = t0, c.t1 = std::min(seg.len(s), t0 + kChunk);
    }
  pool().parallel_for(cg.size(), [&](size_t c0, size_t c1) {
    std::vector<float> keys, dkeys;
    for (size_t c = c0; c < c1; ++c) {
      ChunkGrads& cgc = cg[c];
      const int s = cgc.seq, kv0 = seg.start(s), e0 = a.ratio > 0 ? seg.entry_start(s, ratio) : 0;
      const size_t entries = a.ratio > 0 ? size_t(seg.len(s) / ratio) : 0;
      cgc.dkv.assign(size_t(seg.len(s)) * D, 0.0f), cgc.dentries.assign(entries * D, 0.0f);
      cgc.dikeys.assign(a.ratio == 4 ? entries * id : 0, 0.0f), cgc.dsink.assign(H, 0.0f);
      for (int p = cgc.t0; p < cgc.t1; ++p)
        token_backward(a, rope, f, d_o, size_t(kv0 + p), window_start(a, seg, s, p), p, kv0, e0, dq, diq, diw, cgc,
                       keys, dkeys);
    }
  });
  std::vector<float> dkv(f.kv.size(), 0.0f), dentries(f.entries.size(), 0.0f), dikeys(f.ikeys.size(), 0.0f);
  double index_loss = 0;
  auto add_at = [](std::vector<float>& dst, size_t at, const std::vector<float>& src) {
    for (size_t i = 0; i < src.size(); ++i) dst[at + i] += src[i];
  };
  for (const ChunkGrads& c : cg) {
    add_at(dkv, size_t(seg.start(c.seq)) * D, c.dkv);
    if (a.ratio > 0) add_at(dentries, size_t(seg.entry_start(c.seq, ratio)) * D, c.dentries);
    if (a.ratio == 4) add_at(dikeys, size_t(seg.entry_start(c.seq, ratio)) * id, c.dikeys);
    add_to(g.attn_sink, c.dsink);
    index_loss += c.index_loss;
  }

  // Compressed entries back into x; the indexer's own weights (its inputs are detached).
  if (a.ratio > 0) compressor_backward(a.compressor, rope, a.eps, x, seg, dentries, g.compressor, dx, &f.compressor);
  else std::fill(dx.begin(), dx.end(), 0.0f);
  if (a.ratio == 4) {
    std::vector<float> unused_x(x.size()), unused_qn(f.qn.size());
    compressor_backward(a.indexer.compressor, rope, a.eps, x, seg, dikeys, g.indexer.compressor, unused_x,
                        &f.index_compressor);
    for_row_chunks(n, kChunk, [&](size_t, size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t)
        for (int h = 0; h < ih; ++h)
          rope_backward(rope, std::span<float>(diq).subspan((t * ih + h) * id + id - rd, rd), pos[t], false);
    });
    linear_backward(f.qn, a.indexer.wq_b, diq, n, a.q_lora, ih * id, unused_qn, g.indexer.wq_b);
    const float wscale = index_weight_scale(a.indexer);
    for (float& v : diw) v *= wscale;
    linear_backward(x, a.indexer.weights_proj, diw, n, dim, ih, unused_x, g.indexer.weights_proj);
  }

  // kv path: RoPE, kv_norm, wkv.
  for_row_chunks(n, kChunk, [&](size_t, size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      rope_backward(rope, std::span<float>(dkv).subspan(t * D + D - rd, rd), pos[t], false);
  });
  std::vector<float> dkva(f.kva.size());
  rmsnorm_backward(f.kva, a.kv_norm, a.eps, D, dkv, dkva, g.kv_norm);
  linear_backward(x, a.wkv, dkva, n, dim, D, dx, g.wkv, /*add_dx=*/true);
  // q path: RoPE, per-head norm, wq_b, q_norm, wq_a.
  for_row_chunks(n, kChunk, [&](size_t, size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (int h = 0; h < H; ++h)
        rope_backward(rope, std::span<float>(dq).subspan((t * H + h) * D + D - rd, rd), pos[t], false);
  });
  std::vector<float> dqb(f.qb.size()), dqn(f.qn.size()), dqa(f.qa.size());
  rmsnorm_backward(f.qb, {}, a.eps, D, dq, dqb, {});
  linear_backward(f.qn, a.wq_b, dqb, n, a.q_lora, H * D, dqn, g.wq_b);
  rmsnorm_backward(f.qa, a.q_norm, a.eps, a.q_lora, dqn, dqa, g.q_norm);
  linear_backward(x, a.wq_a, dqa, n, dim, a.q_lora, dx, g.wq_a, /*add_dx=*/true);
  return index_loss;
}

double indexer_loss_f32(const AttentionF32& a, const Rope& rope, std::span<const float> x, const Segments& seg) {
  // The backward's loss with the gradients thrown away: one definition of the target.
  AttentionF32 g = a;
  std::vector<float> dout(size_t(seg.rows()) * a.dim, 0.0f), dx(dout.size());
  return attention_backward(a, rope, x, seg, dout, g, dx);
}

}  // namespace dsv4
