// Recomputes projections and pooled entries, then for each block: RoPE back, RMSNorm back, the
// per-dimension softmax pooling back, scattered to the tokens (and columns) the block read.
#include "train/compressor_backward.h"

#include <cmath>
#include <limits>

#include "core/check.h"
#include "ops/rope.h"
#include "train/backward.h"

namespace dsv4 {

void compressor_backward(const CompressorF32& c, const Rope& rope, float norm_eps, std::span<const float> x, int n,
                         std::span<const float> dentries, CompressorF32& g, std::span<float> dx) {
  const int r = c.ratio, hd = c.head_dim, width = c.width(), dim = c.dim, blocks = n / r;
  DSV4_CHECK(x.size() == size_t(n) * dim && dentries.size() == size_t(blocks) * hd && dx.size() == x.size(),
             "compressor_backward: sizes do not match");
  std::vector<float> kv(size_t(n) * width), score(kv.size());
  linear_forward(x, c.wkv, n, dim, width, kv);
  linear_forward(x, c.wgate, n, dim, width, score);
  for (int t = 0; t < n; ++t)
    for (int k = 0; k < width; ++k) score[size_t(t) * width + k] += c.ape[size_t(t % r) * width + k];
  std::vector<float> dkv(kv.size(), 0.0f), dscore(kv.size(), 0.0f);
  const int rows = c.overlap ? 2 * r : r;
  std::vector<float> bs(size_t(rows) * hd), bkv(bs.size()), dbs(bs.size()), dbkv(bs.size());
  std::vector<float> pooled(hd), normed(hd), d(hd), dpooled(hd);
  // The token and column each pooled row of block b reads (-1: the empty block before the first).
  auto source = [&](int b, int i, int col, int& t, int& k) {
    if (c.overlap && i < r) t = (b - 1) * r + i, k = col;  // previous block, first half
    else t = b * r + (c.overlap ? i - r : i), k = (c.overlap ? hd : 0) + col;
  };
  for (int b = 0; b < blocks; ++b) {
    for (int i = 0; i < rows; ++i)
      for (int col = 0; col < hd; ++col) {
        int t, k;
        source(b, i, col, t, k);
        const bool empty = t < 0;
        bs[size_t(i) * hd + col] = empty ? -std::numeric_limits<float>::infinity() : score[size_t(t) * width + k];
        bkv[size_t(i) * hd + col] = empty ? 0.0f : kv[size_t(t) * width + k];
      }
    // Forward of this entry up to the rope, then back: rope^T, RMSNorm, pooling.
    compressor_pool_forward(bs, bkv, rows, hd, pooled);
    std::copy(dentries.begin() + size_t(b) * hd, dentries.begin() + size_t(b + 1) * hd, d.begin());
    rope_backward(rope, std::span<float>(d).subspan(hd - rope.dim()), static_cast<long long>(b) * r, false);
    rmsnorm_backward(pooled, c.norm, norm_eps, hd, d, dpooled, g.norm);
    compressor_pool_backward(bs, bkv, rows, hd, dpooled, dbs, dbkv);
    for (int i = 0; i < rows; ++i)
      for (int col = 0; col < hd; ++col) {
        int t, k;
        source(b, i, col, t, k);
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
