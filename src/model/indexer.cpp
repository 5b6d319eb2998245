// Indexer scoring and top-k selection. The keys are stored packed (FP4) in act_quant mode and
// unpacked per tile of blocks; the dot products are ops/dot.h (one reduction order per element,
// whatever the tiling), so a token's choice is the same in a prefill and in a decode step.
#include "model/indexer.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "dist/comm.h"
#include "model/compressor.h"
#include "ops/dot.h"
#include "ops/hadamard.h"
#include "ops/topk.h"
#include "quant/act_quant.h"

namespace dsv4 {

void indexer_choose(const ModelConfig& c, int ratio, int ih, const float* q, const float* weights, int n,
                    long long pos0, const CompressorState& keys, std::vector<int>* chosen) {
  const int id = c.index_head_dim;
  // score(t, b) for the blocks b < n_vis(t) each token sees. Jobs are (tile of keys, group of
  // tokens); a job unpacks its keys once (bit for bit) and scores them for all its tokens, so
  // a decode step spreads over threads too. Tokens go in batches that bound the score buffer.
  auto n_vis = [&](int t) { return static_cast<int>((pos0 + t + 1) / ratio); };
  const int vis_all = n_vis(n - 1), n_thr = pool().size();
  constexpr int kTokensPerJob = 16;
  constexpr size_t kMaxScores = size_t(1) << 22;  // floats (16 MiB)
  const int batch = static_cast<int>(std::clamp<size_t>(kMaxScores / std::max(1, vis_all), 1, n));
  std::vector<float> score;
  for (int g0 = 0; g0 < n; g0 += batch) {
    const int g1 = std::min(n, g0 + batch), vis = n_vis(g1 - 1);
    const int subs = (g1 - g0 + kTokensPerJob - 1) / kTokensPerJob;
    // Tiles of 8 .. 64 keys, small enough to give every thread a few jobs.
    const int tile = std::clamp((vis * subs + 4 * n_thr - 1) / (4 * n_thr), 8, 64);
    const int tiles = (vis + tile - 1) / tile;
    score.assign(static_cast<size_t>(g1 - g0) * vis, 0.0f);  // [g1 - g0, vis]
    pool().parallel_for(static_cast<size_t>(tiles) * subs, [&](size_t j0, size_t j1) {
      std::vector<float> rows(static_cast<size_t>(tile) * id), dots(static_cast<size_t>(ih) * tile);
      std::vector<const float*> ptr(tile);
      long long unpacked = -1;  // consecutive jobs share a tile
      for (size_t job = j0; job < j1; ++job) {
        const int ti = static_cast<int>(job / subs), sub = static_cast<int>(job % subs);
        const int b0 = ti * tile, b1 = std::min(vis, b0 + tile);
        if (unpacked != ti) {
          for (int b = b0; b < b1; ++b) {
            ptr[b - b0] = rows.data() + static_cast<size_t>(b - b0) * id;
            keys.entries.load(b, rows.data() + static_cast<size_t>(b - b0) * id);
          }
          unpacked = ti;
        }
        const int t_end = std::min(g1, g0 + (sub + 1) * kTokensPerJob);
        for (int t = g0 + sub * kTokensPerJob; t < t_end; ++t) {
          const int nb = std::min(b1, n_vis(t)) - b0;
          if (nb <= 0) continue;
          const float* wt = weights + static_cast<size_t>(t) * ih;
          dot_rows(q + static_cast<size_t>(t) * ih * id, ih, ptr.data(), nb, id, dots.data());
          float* st = score.data() + static_cast<size_t>(t - g0) * vis + b0;
          for (int b = 0; b < nb; ++b) {
            float acc = 0;
            for (int h = 0; h < ih; ++h) acc += std::max(dots[static_cast<size_t>(h) * nb + b], 0.0f) * wt[h];
            st[b] = acc;
          }
        }
      }
    });
    if (ih != c.index_n_heads) Comm::get().all_reduce_sum(score);  // each rank scored its heads
    pool().parallel_for(static_cast<size_t>(g1 - g0), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const int t = g0 + static_cast<int>(i);
        chosen[t] = topk_indices(std::span<const float>(score).subspan(i * vis, n_vis(t)), c.index_topk);
      }
    });
  }
}

std::vector<std::vector<int>> indexer_forward(const IndexerWeights& w, const ModelConfig& c,
                                              std::span<const float> x, std::span<const float> qr,
                                              std::span<const Segment> segs, std::span<const long long> pos,
                                              const Rope& rope, bool act_quant) {
  // ih: this rank's index heads (wq_b and weights_proj hold ih rows); the score scale is that
  // of all c.index_n_heads heads, and the ranks' partial scores add up before the top-k.
  const int id = c.index_head_dim, rd = rope.dim(), ih = w.wq_b.out / id;
  const int n = static_cast<int>(qr.size() / c.q_lora_rank);
  std::vector<float> q(static_cast<size_t>(n) * ih * id);  // [n, ih, id]
  linear(w.wq_b, qr, n, q, act_quant);
  pool().parallel_for(static_cast<size_t>(n) * ih, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {  // i: (row, head)
      std::span<float> qh(q.data() + i * id, id);
      rope.apply(qh.data() + id - rd, pos[i / ih]);
      hadamard_rotate(qh);
      if (act_quant) fp4_roundtrip(qh, 32);
    }
  });
  std::vector<float> kv, score;
  compressor_project(w.compressor, x, n, kv, score);
  const size_t width = kv.size() / n;
  for_each_segment(segs, [&](const Segment& sg) {
    compressor_absorb(w.compressor, kv.data() + sg.row0 * width, score.data() + sg.row0 * width, sg.n, sg.pos0,
                      rope, c.rms_norm_eps, CompressedRounding::hadamard_fp4, act_quant, sg.cache->indexer);
  });
  std::vector<float> weights(static_cast<size_t>(n) * ih);  // [n, ih]
  linear(w.weights_proj, x, n, weights, false);
  const float wscale = static_cast<float>(std::pow(id, -0.5) * std::pow(c.index_n_heads, -0.5));
  for (float& v : weights) v *= wscale;

  std::vector<std::vector<int>> chosen(n);
  for_each_segment(segs, [&](const Segment& sg) {
    indexer_choose(c, w.compressor.ratio, ih, q.data() + static_cast<size_t>(sg.row0) * ih * id,
                weights.data() + static_cast<size_t>(sg.row0) * ih, sg.n, sg.pos0, sg.cache->indexer,
                chosen.data() + sg.row0);
  }, /*together=*/ih == c.index_n_heads);  // else the ranks add their scores per segment
  return chosen;
}

}  // namespace dsv4
