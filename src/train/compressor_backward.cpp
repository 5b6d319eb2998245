// The forward pools each block's rows; the backward pools them again from the kept (or
// recomputed) projections, then for each block: RoPE back, RMSNorm back, the per-dimension
// softmax pooling back, scattered to the tokens (and columns) the block read.
#include "train/compressor_backward.h"

#include <cmath>
#include <limits>

#include "core/check.h"
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
  const std::vector<float>& kv;
  const std::vector<float>& score;
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
                                          std::span<const float> x, int n, CompressorTape* tape,
                                          CompressorState* state) {
  DSV4_CHECK(x.size() == size_t(n) * w.wkv.in, "compressor_forward_f32: x has the wrong size");
  CompressorTape own_tape;
  CompressorTape& tp = tape ? *tape : own_tape;
  compressor_project(w, x, n, tp.kv, tp.score);
  CompressorState own_state;
  CompressorState& s = state ? *state : own_state;
  compressor_init(w, KvFormat::f32, rope.dim(), s);
  compressor_absorb(w, tp.kv.data(), tp.score.data(), n, 0, rope, norm_eps, CompressedRounding::none,
                    /*act_quant=*/false, s);
  std::vector<float> entries(s.entries.size() * w.head_dim);
  for (size_t b = 0; b < s.entries.size(); ++b) s.entries.load(b, entries.data() + b * w.head_dim);
  return entries;
}

void compressor_backward(const CompressorF32& c, const Rope& rope, float norm_eps, std::span<const float> x, int n,
                         std::span<const float> dentries, CompressorF32& g, std::span<float> dx,
                         const CompressorTape* tape) {
  const int r = c.ratio, hd = c.head_dim, width = c.width(), dim = c.dim, blocks = n / r;
  DSV4_CHECK(x.size() == size_t(n) * dim && dentries.size() == size_t(blocks) * hd && dx.size() == x.size(),
             "compressor_backward: sizes do not match");
  CompressorTape recomputed;
  if (!tape) {
    MasterViews views;
    compressor_forward_f32(views.compressor(c), rope, norm_eps, x, n, &recomputed);
  }
  const CompressorTape& tp = tape ? *tape : recomputed;
  DSV4_CHECK(tp.kv.size() == size_t(n) * width, "compressor_backward: the tape is not of these ", n, " tokens");
  const CompressorRows p{c, tp.kv, tp.score};
  std::vector<float> dkv(p.kv.size(), 0.0f), dscore(p.kv.size(), 0.0f);
  const int rows = p.rows();
  std::vector<float> bs(size_t(rows) * hd), bkv(bs.size()), dbs(bs.size()), dbkv(bs.size());
  std::vector<float> pooled(hd), d(hd), dpooled(hd);
  for (int b = 0; b < blocks; ++b) {
    p.block(b, bs, bkv);
    // Forward of this entry up to the rope, then back: rope^T, RMSNorm, pooling.
    compressor_pool(bs.data(), bkv.data(), rows, hd, pooled.data());
    std::copy(dentries.begin() + size_t(b) * hd, dentries.begin() + size_t(b + 1) * hd, d.begin());
    rope_backward(rope, std::span<float>(d).subspan(hd - rope.dim()), static_cast<long long>(b) * r, false);
    rmsnorm_backward(pooled, c.norm, norm_eps, hd, d, dpooled, g.norm);
    compressor_pool_backward(bs, bkv, rows, hd, dpooled, dbs, dbkv);
    for (int i = 0; i < rows; ++i)
      for (int col = 0; col < hd; ++col) {
        int t, k;
        p.source(b, i, col, t, k);
        if (t < 0) continue;
        dscore[size_t(t) * width + k] += dbs[size_t(i) * hd + col];
        dkv[size_t(t) * width + k] += dbkv[size_t(i) * hd + col];
      }
  }
  for (int t = 0; t < n; ++t)
    for (int k = 0; k < width; ++k) g.ape[size_t(t % r) * width + k] += dscore[size_t(t) * width + k];
  std::vector<float> dx2(dx.size());
  linear_backward(x, c.wkv, dkv, n, dim, width, dx, g.wkv);
  linear_backward(x, c.wgate, dscore, n, dim, width, dx2, g.wgate);
  for (size_t i = 0; i < dx.size(); ++i) dx[i] += dx2[i];
}

}  // namespace dsv4
