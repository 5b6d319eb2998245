// The forward pools each block's rows; the backward pools them again from the kept (or
// recomputed) projections, then for each block: RoPE back, RMSNorm back, the per-dimension
// softmax pooling back, scattered to the tokens (and columns) the block read.
#include "train/compressor_backward.h"

#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/thread_pool.h"
#include "model/compressor.h"
#include "ops/rope.h"
#include "train/attention_head.h"
#include "train/compressor_pool.h"
#include "train/master_views.h"
#include "train/matmul.h"
#include "train/norm_backward.h"

namespace dsv4 {

namespace {

// What the compressor's blocks read: the projections of every token, and per block its rows
// of scores (with the ape of each row's slot; -inf for the empty block before the first) and
// values, [rows, head_dim].
struct CompressorRows {
  const CompressorF32& c;
  std::span<const float> kv, score;  // one sequence's rows
  int rows() const { return c.overlap ? 2 * c.ratio : c.ratio; }
  // The token and column that pooled row i, column col of block b reads (t < 0: empty).
  void source(int b, int i, int col, int& t, int& k) const {
    const int r = c.ratio, hd = c.head_dim;
    if (c.overlap && i < r) t = (b - 1) * r + i, k = col;  // previous block, first half
    else t = b * r + (c.overlap ? i - r : i), k = (c.overlap ? hd : 0) + col;
  }
  void block(int b, std::vector<float>& bs, std::vector<float>& bkv) const {
    const int hd = c.head_dim, width = c.width();
    for (int i = 0; i < rows(); ++i)
      for (int col = 0; col < hd; ++col) {
        int t, k;
        source(b, i, col, t, k);
        const bool empty = t < 0;
        bs[size_t(i) * hd + col] = empty ? -std::numeric_limits<float>::infinity()
                                         : score[size_t(t) * width + k] + c.ape[size_t(t % c.ratio) * width + k];
        bkv[size_t(i) * hd + col] = empty ? 0.0f : kv[size_t(t) * width + k];
      }
  }
};

}  // namespace

std::vector<float> compressor_forward_f32(const CompressorWeights& w, const Rope& rope, float norm_eps,
                                          std::span<const float> x, const Segments& seg, CompressorTape* tape,
                                          std::vector<CompressorState>* states) {
  DSV4_CHECK(x.size() == size_t(seg.rows()) * w.wkv.in, "compressor_forward_f32: x has the wrong size");
  CompressorTape own_tape;
  CompressorTape& tp = tape ? *tape : own_tape;
  compressor_project(w, x, seg.rows(), tp.kv, tp.score);
  std::vector<CompressorState> own_states;
  std::vector<CompressorState>& st = states ? *states : own_states;
  st.clear();
  st.resize(seg.count());
  const size_t width = tp.kv.size() / seg.rows();
  std::vector<float> entries(size_t(seg.entries(w.ratio)) * w.head_dim);
  for (int s = 0; s < seg.count(); ++s) {
    compressor_init(w, KvFormat::f32, rope.dim(), st[s]);
    const size_t r0 = size_t(seg.start(s)) * width;
    compressor_absorb(w, tp.kv.data() + r0, tp.score.data() + r0, seg.len(s), 0, rope, norm_eps,
                      CompressedRounding::none, /*act_quant=*/false, st[s]);
    float* out = entries.data() + size_t(seg.entry_start(s, w.ratio)) * w.head_dim;
    for (size_t b = 0; b < st[s].entries.size(); ++b) st[s].entries.load(b, out + b * w.head_dim);
  }
  return entries;
}

void compressor_backward(const CompressorF32& c, const Rope& rope, float norm_eps, std::span<const float> x,
                         const Segments& seg, std::span<const float> dentries, CompressorF32& g, std::span<float> dx,
                         const CompressorTape* tape) {
  const int r = c.ratio, hd = c.head_dim, width = c.width(), dim = c.dim, n = seg.rows();
  DSV4_CHECK(x.size() == size_t(n) * dim && dentries.size() == size_t(seg.entries(r)) * hd && dx.size() == x.size(),
             "compressor_backward: sizes do not match");
  CompressorTape recomputed;
  if (!tape) {
    MasterViews views;
    compressor_forward_f32(views.compressor(c), rope, norm_eps, x, seg, &recomputed);
  }
  const CompressorTape& tp = tape ? *tape : recomputed;
  DSV4_CHECK(tp.kv.size() == size_t(n) * width, "compressor_backward: the tape is not of these ", n, " tokens");
  std::vector<float> dkv(tp.kv.size(), 0.0f), dscore(tp.kv.size(), 0.0f);
  const int rows = c.overlap ? 2 * r : r;
  // The sequences in parallel (their rows apart), each with its own norm and ape gradients,
  // added in sequence order.
  std::vector<std::vector<float>> g_norm(seg.count()), g_ape(seg.count());
  pool().parallel_for(size_t(seg.count()), [&](size_t s0, size_t s1) {
    std::vector<float> bs(size_t(rows) * hd), bkv(bs.size()), dbs(bs.size()), dbkv(bs.size());
    std::vector<float> pooled(hd), d(hd), dpooled(hd);
    for (size_t s = s0; s < s1; ++s) {
      g_norm[s].assign(hd, 0.0f), g_ape[s].assign(g.ape.size(), 0.0f);
      const size_t r0 = size_t(seg.start(s)) * width, span = size_t(seg.len(s)) * width;
      const CompressorRows p{c, std::span<const float>(tp.kv).subspan(r0, span),
                             std::span<const float>(tp.score).subspan(r0, span)};
      const int e0 = seg.entry_start(s, r);
      for (int b = 0; b < seg.len(s) / r; ++b) {
        p.block(b, bs, bkv);
        // Forward of this entry up to the rope, then back: rope^T, RMSNorm, pooling.
        compressor_pool(bs.data(), bkv.data(), rows, hd, pooled.data());
        std::copy_n(dentries.begin() + size_t(e0 + b) * hd, hd, d.begin());
        rope_backward(rope, std::span<float>(d).subspan(hd - rope.dim()), static_cast<long long>(b) * r, false);
        rmsnorm_backward(pooled, c.norm, norm_eps, hd, d, dpooled, g_norm[s]);
        compressor_pool_backward(bs, bkv, rows, hd, dpooled, dbs, dbkv);
        for (int i = 0; i < rows; ++i)
          for (int col = 0; col < hd; ++col) {
            int t, k;
            p.source(b, i, col, t, k);
            if (t < 0) continue;
            dscore[r0 + size_t(t) * width + k] += dbs[size_t(i) * hd + col];
            dkv[r0 + size_t(t) * width + k] += dbkv[size_t(i) * hd + col];
          }
      }
      for (int t = 0; t < seg.len(s); ++t)
        for (int k = 0; k < width; ++k) g_ape[s][size_t(t % r) * width + k] += dscore[r0 + size_t(t) * width + k];
    }
  });
  for (int s = 0; s < seg.count(); ++s) add_to(g.norm, g_norm[s]), add_to(g.ape, g_ape[s]);
  linear_backward(x, c.wkv, dkv, n, dim, width, dx, g.wkv);
  linear_backward(x, c.wgate, dscore, n, dim, width, dx, g.wgate, /*add_dx=*/true);
}

}  // namespace dsv4
