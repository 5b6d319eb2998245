// The training forward and backward of model/model.cpp's layer loop, in float on the master
// weights: per block hc_pre -> attn_norm -> attention -> hc_post, hc_pre -> ffn_norm -> MoE ->
// hc_post; then hc_head -> norm -> head; the MTP layer on the final stream. A batch's
// sequences run as the rows of one matrix (train/segments.h): every product is one GEMM over
// all of the batch's tokens, threads over rows. The forward keeps every block's inside for the
// backward. Per-token mHC gradients are computed over fixed chunks of tokens, each with its own
// parameter-gradient buffers summed in chunk order (the result depends on neither timing nor
// the number of threads).
#include "train/train_model.h"

#include <algorithm>

#include "core/check.h"
#include "core/thread_pool.h"
#include "core/uninit_vector.h"
#include "model/hc.h"
#include "model/mtp_input.h"
#include "ops/norm.h"
#include "train/cross_entropy.h"
#include "train/embedding_backward.h"
#include "train/hc_backward.h"
#include "train/master_views.h"
#include "train/matmul.h"
#include "train/norm_backward.h"
#include "train/row_chunks.h"
#include "train/segments.h"

namespace dsv4 {

TrainRopes::TrainRopes(const ModelConfig& c)
    : plain(c.qk_rope_head_dim, c.rope_theta, 0, 1, 0, 0),
      yarn(c.qk_rope_head_dim, c.compress_rope_theta, c.original_max_position_embeddings, c.rope_factor, c.beta_fast,
           c.beta_slow) {}

namespace {

HcParams params_of(const HcF32& h) { return HcParams::from(h.fn, h.base, h.scale); }

// The inside of one block, from its input stream; with keep, attention's and MoE's too.
struct BlockTape {
  HcMix mix_a, mix_f;
  UninitFloats ya, xa, oa, h_mid, yf, xf, of;
  AttentionTape attn;
  MoeTape ffn;
};

void block_run(const BlockF32& b, const ModelConfig& c, const Rope& rope, std::span<const float> h_in,
               std::span<const int> tokens, const Segments& seg, BlockTape& tp, UninitFloats& h_out,
               std::vector<long long>* load, bool keep) {
  const int hc = c.hc_mult, dim = c.hidden_size, n = seg.rows();
  const float eps = c.rms_norm_eps;
  const size_t rows = size_t(n) * dim;
  tp.ya.resize(rows), tp.xa.resize(rows), tp.oa.resize(rows), tp.h_mid.resize(h_in.size());
  hc_pre(params_of(b.hc_attn), h_in, n, hc, dim, eps, c.hc_sinkhorn_iters, c.hc_eps, tp.ya, tp.mix_a);
  rmsnorm(tp.ya, b.attn_norm, eps, dim, tp.xa);
  attention_forward_f32(b.attn, rope, tp.xa, seg, tp.oa, keep ? &tp.attn : nullptr);
  hc_post(tp.mix_a, tp.oa, h_in, n, hc, dim, tp.h_mid);
  tp.yf.resize(rows), tp.xf.resize(rows), tp.of.resize(rows), h_out.resize(h_in.size());
  hc_pre(params_of(b.hc_ffn), tp.h_mid, n, hc, dim, eps, c.hc_sinkhorn_iters, c.hc_eps, tp.yf, tp.mix_f);
  rmsnorm(tp.yf, b.ffn_norm, eps, dim, tp.xf);
  moe_forward_f32(b.ffn, b.routing, c, tp.xf, tokens, n, tp.of, load, keep ? &tp.ffn : nullptr);
  hc_post(tp.mix_f, tp.of, tp.h_mid, n, hc, dim, h_out);
}

// hc_post's backward for every token: dnew [n, hc, dim] -> dpost [n, hc], dcomb [n, hc, hc],
// dout [n, dim], dres [n, hc, dim].
void hc_post_back(const HcMix& mix, std::span<const float> out, std::span<const float> res, int n, int hc, int dim,
                  std::span<const float> dnew, UninitFloats& dpost, UninitFloats& dcomb, UninitFloats& dout,
                  UninitFloats& dres) {
  dpost.resize(size_t(n) * hc), dcomb.resize(size_t(n) * hc * hc), dout.resize(size_t(n) * dim);
  dres.resize(res.size());
  const size_t flat = size_t(hc) * dim;
  pool().parallel_for(size_t(n), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      hc_post_backward(std::span<const float>(mix.post).subspan(t * hc, hc),
                       std::span<const float>(mix.comb).subspan(t * hc * hc, size_t(hc) * hc),
                       out.subspan(t * dim, dim), res.subspan(t * flat, flat), hc, dim, dnew.subspan(t * flat, flat),
                       std::span<float>(dpost).subspan(t * hc, hc), std::span<float>(dcomb).subspan(t * hc * hc, size_t(hc) * hc),
                       std::span<float>(dout).subspan(t * dim, dim), std::span<float>(dres).subspan(t * flat, flat));
  });
}

// hc_pre's backward for every token, its dx added into dx_acc [n, hc, dim].
void hc_pre_back(const HcF32& p, const ModelConfig& c, std::span<const float> x, int n, std::span<const float> dy,
                 std::span<const float> dpost, std::span<const float> dcomb, std::span<float> dx_acc, HcF32& g) {
  UninitFloats dx(x.size());
  hc_pre_backward_batch(p.fn, params_of(p), x, n, c.hc_mult, c.hidden_size, c.rms_norm_eps, c.hc_sinkhorn_iters,
                        c.hc_eps, dy, dpost, dcomb, dx, g.fn, g.base, g.scale);
  add_to(dx_acc, dx);
}

// dh_out [n, hc, dim] -> dh_in, from the block's kept forward tp; gradients into gb; returns
// the indexer's loss.
double block_backward(const BlockF32& b, const ModelConfig& c, const Rope& rope, std::span<const float> h_in,
                      std::span<const int> tokens, const Segments& seg, const BlockTape& tp,
                      std::span<const float> dh_out, BlockF32& gb, UninitFloats& dh_in) {
  const int hc = c.hc_mult, dim = c.hidden_size, n = seg.rows();
  const float eps = c.rms_norm_eps;
  UninitFloats dpost, dcomb, dsub, dres, dx(size_t(n) * dim), dy(dx.size());
  // MoE sub-layer.
  hc_post_back(tp.mix_f, tp.of, tp.h_mid, n, hc, dim, dh_out, dpost, dcomb, dsub, dres);
  moe_backward_f32(b.ffn, b.routing, c, tp.xf, tokens, n, dsub, gb.ffn, dx, &tp.ffn);
  rmsnorm_backward(tp.yf, b.ffn_norm, eps, dim, dx, dy, gb.ffn_norm);
  hc_pre_back(b.hc_ffn, c, tp.h_mid, n, dy, dpost, dcomb, dres, gb.hc_ffn);
  const UninitFloats dh_mid = std::move(dres);
  // Attention sub-layer.
  hc_post_back(tp.mix_a, tp.oa, h_in, n, hc, dim, dh_mid, dpost, dcomb, dsub, dres);
  const double index_loss = attention_backward(b.attn, rope, tp.xa, seg, dsub, gb.attn, dx, &tp.attn);
  rmsnorm_backward(tp.ya, b.attn_norm, eps, dim, dx, dy, gb.attn_norm);
  hc_pre_back(b.hc_attn, c, h_in, n, dy, dpost, dcomb, dres, gb.hc_attn);
  dh_in = std::move(dres);
  return index_loss;
}

// Logits [n, vocab] of a final stream through hc_head, norm and the head; keeps y and yn.
struct HeadTape {
  UninitFloats y, yn, logits;
};

void head_run(const HcF32& hc_head_p, const std::vector<float>& norm, const std::vector<float>& head,
              const ModelConfig& c, std::span<const float> stream, int n, HeadTape& tp) {
  const int dim = c.hidden_size, V = c.vocab_size;
  tp.y.resize(size_t(n) * dim), tp.yn.resize(tp.y.size()), tp.logits.resize(size_t(n) * V);
  hc_head(params_of(hc_head_p), stream, n, c.hc_mult, dim, c.rms_norm_eps, c.hc_eps, tp.y);
  rmsnorm(tp.y, norm, c.rms_norm_eps, dim, tp.yn);
  linear_forward(tp.yn, head, n, dim, V, tp.logits);
}

// dlogits -> dstream [n, hc, dim] (overwritten); head, norm and hc_head gradients accumulated.
void head_back(const HcF32& hc_head_p, const std::vector<float>& norm, const std::vector<float>& head,
               const ModelConfig& c, std::span<const float> stream, int n, const HeadTape& tp,
               std::span<const float> dlogits, HcF32& g_hc, std::vector<float>& g_norm, std::vector<float>& g_head,
               UninitFloats& dstream) {
  const int dim = c.hidden_size, hc = c.hc_mult, V = c.vocab_size;
  const size_t flat = size_t(hc) * dim;
  UninitFloats dyn(tp.yn.size()), dy(tp.y.size());
  linear_backward(tp.yn, head, dlogits, n, dim, V, dyn, g_head);
  rmsnorm_backward(tp.y, norm, c.rms_norm_eps, dim, dyn, dy, g_norm);
  dstream.resize(size_t(n) * flat);
  const HcParams hp = params_of(hc_head_p);
  // Tokens in fixed chunks, each with its own hc_head gradients, added in chunk order.
  constexpr size_t kChunk = 64;
  std::vector<HcF32> part(row_chunk_count(n, kChunk));
  for_row_chunks(n, kChunk, [&](size_t k, size_t t0, size_t t1) {
    HcF32& gp = part[k];
    gp.fn.assign(g_hc.fn.size(), 0.0f), gp.base.assign(g_hc.base.size(), 0.0f), gp.scale.assign(g_hc.scale.size(), 0.0f);
    for (size_t t = t0; t < t1; ++t)
      hc_head_backward(hc_head_p.fn, hp, stream.subspan(t * flat, flat), hc, dim, c.rms_norm_eps, c.hc_eps,
                       std::span<const float>(dy).subspan(t * dim, dim), std::span<float>(dstream).subspan(t * flat, flat),
                       gp.fn, gp.base, gp.scale);
  });
  for (const HcF32& gp : part) add_to(g_hc.fn, gp.fn), add_to(g_hc.base, gp.base), add_to(g_hc.scale, gp.scale);
}

std::vector<float> embed_rows(const TrainWeights& w, std::span<const int> ids, int dim) {
  std::vector<float> e(ids.size() * dim);
  for (size_t t = 0; t < ids.size(); ++t)
    std::copy_n(w.embed.begin() + size_t(ids[t]) * dim, dim, e.begin() + t * dim);
  return e;
}

// The main layers' streams: hs[l] is block l's input, hs.back() the final stream; with tapes,
// every block's inside for the backward, kept rather than computed again (the default model's
// training, 10 steps, peaked at 360 MB resident with them).
std::vector<UninitFloats> main_streams(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                                       std::span<const int> inputs, const Segments& seg,
                                       std::vector<std::vector<long long>>* loads, std::vector<BlockTape>* tapes = nullptr) {
  const int n = seg.rows(), hc = c.hc_mult, dim = c.hidden_size;
  const std::vector<float> e = embed_rows(w, inputs, dim);
  std::vector<UninitFloats> hs(1, UninitFloats(size_t(n) * hc * dim));
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < hc; ++i) std::copy_n(e.begin() + size_t(t) * dim, dim, hs[0].begin() + (size_t(t) * hc + i) * dim);
  BlockTape scratch;
  if (tapes) tapes->resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    UninitFloats out;
    block_run(w.layers[l], c, ropes.of(w.layers[l].attn.ratio), hs.back(), inputs, seg, tapes ? (*tapes)[l] : scratch,
              out, loads ? &(*loads)[l] : nullptr, tapes != nullptr);
    hs.push_back(std::move(out));
  }
  return hs;
}

void check_ids(const ModelConfig& c, std::span<const int> inputs, std::span<const int> targets) {
  DSV4_CHECK(!inputs.empty(), "train: an empty sequence");
  DSV4_CHECK(targets.size() == inputs.size(), "train: ", inputs.size(), " inputs but ", targets.size(), " targets");
  for (size_t i = 0; i < inputs.size(); ++i) {
    DSV4_CHECK(inputs[i] >= 0 && inputs[i] < c.vocab_size, "train: input id ", inputs[i], " outside the vocabulary");
    DSV4_CHECK(targets[i] < c.vocab_size, "train: target id ", targets[i], " outside the vocabulary");
  }
}

}  // namespace

std::vector<float> train_logits(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                                std::span<const int> inputs) {
  check_ids(c, inputs, inputs);
  const Segments seg = Segments::one(static_cast<int>(inputs.size()));
  const auto hs = main_streams(w, c, ropes, inputs, seg, nullptr);
  HeadTape tp;
  head_run(w.hc_head, w.norm, w.head, c, hs.back(), seg.rows(), tp);
  return std::vector<float>(tp.logits.begin(), tp.logits.end());
}

namespace {

// v *= s, elementwise over the threads (the logits' gradients: a step's rows times the vocabulary).
void scale_all(std::span<float> v, float s) {
  pool().parallel_for(v.size(), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) v[i] *= s;
  });
}

// out [n, dim] += the hc copies of x [n, hc, dim], copy by copy: the gradient of a row used
// by every copy of the residual stream.
void sum_copies(std::span<const float> x, int n, int hc, int dim, std::span<float> out) {
  pool().parallel_for(size_t(n), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      for (int i = 0; i < hc; ++i)
        for (int d = 0; d < dim; ++d) out[t * dim + d] += x[(t * hc + i) * dim + d];
  });
}

}  // namespace

BatchLoss train_batch(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                      std::span<const BatchSequence> batch, const SequenceOptions& o, TrainWeights* g,
                      std::vector<std::vector<long long>>* loads) {
  DSV4_CHECK(!batch.empty(), "train: an empty batch");
  std::vector<int> lens, inputs;
  for (const BatchSequence& q : batch) {
    check_ids(c, q.inputs, q.targets);
    lens.push_back(static_cast<int>(q.inputs.size()));
    inputs.insert(inputs.end(), q.inputs.begin(), q.inputs.end());
  }
  const Segments seg(lens);
  const int n = seg.rows(), hc = c.hc_mult, dim = c.hidden_size, V = c.vocab_size;
  const size_t flat = size_t(hc) * dim;
  const float eps = c.rms_norm_eps;
  BatchLoss loss;
  loss.seqs.resize(batch.size());
  if (loads) loads->assign(w.layers.size() + w.mtp.size(), {});
  std::vector<BlockTape> tapes;
  const auto hs = main_streams(w, c, ropes, inputs, seg, loads, g ? &tapes : nullptr);
  const UninitFloats& final_stream = hs.back();
  HeadTape head;
  head_run(w.hc_head, w.norm, w.head, c, final_stream, n, head);
  UninitFloats dlogits(head.logits.size());
  for (int s = 0; s < seg.count(); ++s) {
    const size_t r0 = size_t(seg.start(s)) * V, rn = size_t(seg.len(s)) * V;
    const auto logits = std::span<const float>(head.logits).subspan(r0, rn);
    const auto dl = std::span<float>(dlogits).subspan(r0, rn);
    SequenceLoss& l = loss.seqs[s];
    l.main = o.head_loss ? o.head_loss(logits, dl) : cross_entropy(logits, batch[s].targets, V, dl);
    for (int t : batch[s].targets) l.main_targets += t >= 0;
  }

  // MTP: position t, given inputs[t + 1], predicts targets[t + 1]: every sequence of two tokens
  // or more, its first len - 1 rows of the final stream (mrows: where they are in it).
  std::vector<int> mlens, mrows, next, next_targets, mseq;
  if (!w.mtp.empty() && o.mtp_weight > 0)
    for (int s = 0; s < seg.count(); ++s) {
      if (seg.len(s) < 2) continue;
      mlens.push_back(seg.len(s) - 1), mseq.push_back(s);
      for (int t = 0; t + 1 < seg.len(s); ++t) mrows.push_back(seg.start(s) + t);
      next.insert(next.end(), batch[s].inputs.begin() + 1, batch[s].inputs.end());
      next_targets.insert(next_targets.end(), batch[s].targets.begin() + 1, batch[s].targets.end());
    }
  const bool mtp = !mlens.empty();
  const Segments mseg = mtp ? Segments(mlens) : Segments::one(1);
  const int m = static_cast<int>(mrows.size());
  std::vector<float> e, hm0;
  UninitFloats mstream, hm1, dlogits_m;
  MtpInputSaved in;  // en, ep, hn
  HeadTape mhead;
  BlockTape mtape;
  if (mtp) {
    const MtpF32& mw = w.mtp[0];
    e = embed_rows(w, next, dim);
    mstream.resize(size_t(m) * flat);
    for (int j = 0; j < m; ++j) std::copy_n(final_stream.begin() + size_t(mrows[j]) * flat, flat, mstream.begin() + size_t(j) * flat);
    MasterViews views;
    mtp_input(views.mtp_input(mw), c, e, mstream, m, /*act_quant=*/false, hm0, &in);
    block_run(mw.block, c, ropes.of(mw.block.attn.ratio), hm0, next, mseg, mtape, hm1,
              loads ? &(*loads)[w.layers.size()] : nullptr, g != nullptr);
    head_run(mw.hc_head, mw.norm, w.head, c, hm1, m, mhead);
    dlogits_m.resize(mhead.logits.size());
    for (int j = 0; j < mseg.count(); ++j) {
      const size_t r0 = size_t(mseg.start(j)) * V, rn = size_t(mseg.len(j)) * V;
      const auto tg = std::span<const int>(next_targets).subspan(mseg.start(j), mseg.len(j));
      SequenceLoss& l = loss.seqs[mseq[j]];
      l.mtp = cross_entropy(std::span<const float>(mhead.logits).subspan(r0, rn), tg, V,
                            std::span<float>(dlogits_m).subspan(r0, rn));
      for (int t : tg) l.mtp_targets += t >= 0;
    }
  }
  if (!g) return loss;

  scale_all(dlogits, o.grad_scale);
  UninitFloats dstream;
  head_back(w.hc_head, w.norm, w.head, c, final_stream, n, head, dlogits, g->hc_head, g->norm, g->head, dstream);
  if (mtp) {
    const MtpF32& mw = w.mtp[0];
    MtpF32& gm = g->mtp[0];
    scale_all(dlogits_m, o.grad_scale * o.mtp_weight);
    UninitFloats dhm1, dhm0;
    head_back(mw.hc_head, mw.norm, w.head, c, hm1, m, mhead, dlogits_m, gm.hc_head, gm.norm, g->head, dhm1);
    loss.index += block_backward(mw.block, c, ropes.of(mw.block.attn.ratio), hm0, next, mseg, mtape, dhm1, gm.block,
                                 dhm0);
    // hm0 = h_proj(hnorm(stream)) + e_proj(enorm(embed(next))), the latter shared by the copies.
    std::vector<float> dhn(in.hn.size()), dstream_m(in.hn.size()), dep(in.ep.size(), 0.0f), den(in.en.size()),
        de(e.size());
    linear_backward(in.hn, mw.h_proj, dhm0, m * hc, dim, dim, dhn, gm.h_proj);
    rmsnorm_backward(mstream, mw.hnorm, eps, dim, dhn, dstream_m, gm.hnorm);
    pool().parallel_for(size_t(m), [&](size_t j0, size_t j1) {
      for (size_t j = j0; j < j1; ++j)
        for (size_t i = 0; i < flat; ++i) dstream[size_t(mrows[j]) * flat + i] += dstream_m[j * flat + i];
    });
    sum_copies(dhm0, m, hc, dim, dep);
    linear_backward(in.en, mw.e_proj, dep, m, dim, dim, den, gm.e_proj);
    rmsnorm_backward(e, mw.enorm, eps, dim, den, de, gm.enorm);
    embedding_backward(next, de, dim, g->embed);
  }
  for (size_t l = w.layers.size(); l-- > 0;) {
    UninitFloats dh_in;
    loss.index += block_backward(w.layers[l], c, ropes.of(w.layers[l].attn.ratio), hs[l], inputs, seg, tapes[l],
                                 dstream, g->layers[l], dh_in);
    tapes[l] = {};  // done with it
    dstream = std::move(dh_in);
  }
  std::vector<float> de(size_t(n) * dim, 0.0f);
  sum_copies(dstream, n, hc, dim, de);
  embedding_backward(inputs, de, dim, g->embed);
  return loss;
}

SequenceLoss train_sequence(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                            std::span<const int> inputs, std::span<const int> targets, const SequenceOptions& o,
                            TrainWeights* g, std::vector<std::vector<long long>>* loads) {
  const BatchSequence one{inputs, targets};
  return train_batch(w, c, ropes, std::span<const BatchSequence>(&one, 1), o, g, loads).seqs[0];
}

}  // namespace dsv4
