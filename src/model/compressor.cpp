// Compression one token at a time through the pending-row state. The reference's prefill pools
// whole blocks at once and its decode uses this state; both reduce to the same softmax over
// the same rows in the same order, so one path serves both here.
#include "model/compressor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/hadamard.h"
#include "ops/norm.h"
#include "quant/act_quant.h"

namespace dsv4 {

void compressor_init(const CompressorWeights& w, KvFormat entries, int rope_dim, CompressorState& s) {
  const int coff = w.overlap ? 2 : 1;
  const size_t size = static_cast<size_t>(coff * w.ratio) * coff * w.head_dim;
  s.kv.assign(size, 0.0f);
  s.score.assign(size, -std::numeric_limits<float>::infinity());
  s.entries = KvRows(entries, w.head_dim, rope_dim);
}

void compressor_pool(const float* score, const float* kv, int n_rows, int dim, float* entry) {
  std::vector<float> e(n_rows);
  for (int d = 0; d < dim; ++d) {
    float mx = score[d];
    for (int i = 1; i < n_rows; ++i) mx = std::max(mx, score[static_cast<size_t>(i) * dim + d]);
    float sum = 0;
    for (int i = 0; i < n_rows; ++i) sum += (e[i] = std::exp(score[static_cast<size_t>(i) * dim + d] - mx));
    float acc = 0;
    for (int i = 0; i < n_rows; ++i) acc += kv[static_cast<size_t>(i) * dim + d] * (e[i] / sum);
    entry[d] = acc;
  }
}

namespace {

// Pools the pending rows into one entry [head_dim] (before norm).
void pool_block(const CompressorWeights& w, const CompressorState& s, float* entry) {
  const int r = w.ratio, hd = w.head_dim, coff = w.overlap ? 2 : 1, width = coff * hd;
  const int n_rows = coff * r;
  // Overlap: rows [0, r) contribute their first half, rows [r, 2r) their second half.
  std::vector<float> score(static_cast<size_t>(n_rows) * hd), kv(score.size());
  for (int i = 0; i < n_rows; ++i) {
    const size_t from = static_cast<size_t>(i) * width + ((w.overlap && i >= r) ? hd : 0);
    std::copy_n(s.score.begin() + from, hd, score.begin() + static_cast<size_t>(i) * hd);
    std::copy_n(s.kv.begin() + from, hd, kv.begin() + static_cast<size_t>(i) * hd);
  }
  compressor_pool(score.data(), kv.data(), n_rows, hd, entry);
}

}  // namespace

void compressor_project(const CompressorWeights& w, std::span<const float> x, int n, std::vector<float>& kv,
                        std::vector<float>& score) {
  const int width = (w.overlap ? 2 : 1) * w.head_dim;
  kv.resize(static_cast<size_t>(n) * width);
  score.resize(kv.size());
  linear(w.wkv, x, n, kv, false);
  linear(w.wgate, x, n, score, false);
}

void compressor_forward(const CompressorWeights& w, std::span<const float> x, int n, long long pos0,
                        const Rope& rope, float norm_eps, CompressedRounding rounding,
                        bool act_quant, CompressorState& s) {
  std::vector<float> kv, score;
  compressor_project(w, x, n, kv, score);
  compressor_absorb(w, kv.data(), score.data(), n, pos0, rope, norm_eps, rounding, act_quant, s);
}

void compressor_absorb(const CompressorWeights& w, const float* kv, const float* score, int n, long long pos0,
                       const Rope& rope, float norm_eps, CompressedRounding rounding, bool act_quant,
                       CompressorState& s) {
  const int r = w.ratio, hd = w.head_dim, coff = w.overlap ? 2 : 1, width = coff * hd;
  std::vector<float> entry(hd);
  for (int t = 0; t < n; ++t) {
    const long long pos = pos0 + t;
    const int slot = static_cast<int>(pos % r);
    const int row = w.overlap ? r + slot : slot;
    if (s.logging) {
      s.log.insert(s.log.end(), kv + static_cast<size_t>(t) * width, kv + static_cast<size_t>(t + 1) * width);
      s.log.insert(s.log.end(), score + static_cast<size_t>(t) * width, score + static_cast<size_t>(t + 1) * width);
    }
    for (int c = 0; c < width; ++c) {
      s.kv[static_cast<size_t>(row) * width + c] = kv[static_cast<size_t>(t) * width + c];
      s.score[static_cast<size_t>(row) * width + c] =
          score[static_cast<size_t>(t) * width + c] + w.ape[static_cast<size_t>(slot) * width + c];
    }
    if ((pos + 1) % r != 0) continue;
    pool_block(w, s, entry.data());
    if (w.overlap) {  // the current block becomes the previous one
      std::copy(s.kv.begin() + static_cast<size_t>(r) * width, s.kv.end(), s.kv.begin());
      std::copy(s.score.begin() + static_cast<size_t>(r) * width, s.score.end(), s.score.begin());
    }
    rmsnorm(entry, w.norm, norm_eps, hd, entry);
    rope.apply(entry.data() + hd - rope.dim(), pos + 1 - r);
    if (rounding == CompressedRounding::fp8_nope) {
      if (act_quant) fp8_roundtrip(std::span<float>(entry).first(hd - rope.dim()), 64);
    } else if (rounding == CompressedRounding::hadamard_fp4) {
      hadamard_rotate(entry);
      if (act_quant) fp4_roundtrip(entry, 32);
    }
    s.entries.push_back(entry);
  }
}

}  // namespace dsv4
