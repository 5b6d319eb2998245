// Indexer scoring and top-k selection, one query token at a time (parallel over tokens).
#include "model/indexer.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "model/compressor.h"
#include "ops/hadamard.h"
#include "ops/topk.h"
#include "quant/act_quant.h"

namespace dsv4 {

std::vector<std::vector<int>> indexer_forward(const IndexerWeights& w, const ModelConfig& c,
                                              std::span<const float> x, std::span<const float> qr,
                                              int n, long long pos0, const Rope& rope,
                                              bool act_quant, CompressorState& keys) {
  const int ih = c.index_n_heads, id = c.index_head_dim, rd = rope.dim();
  std::vector<float> q(static_cast<size_t>(n) * ih * id);  // [n, ih, id]
  linear(w.wq_b, qr, n, q, act_quant);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < ih; ++h) {
      std::span<float> qh(q.data() + (static_cast<size_t>(t) * ih + h) * id, id);
      rope.apply(qh.data() + id - rd, pos0 + t);
      hadamard_rotate(qh);
      if (act_quant) fp4_roundtrip(qh, 32);
    }
  compressor_forward(w.compressor, x, n, pos0, rope, c.rms_norm_eps, CompressedRounding::hadamard_fp4,
                     act_quant, keys);
  std::vector<float> weights(static_cast<size_t>(n) * ih);  // [n, ih]
  linear(w.weights_proj, x, n, weights, false);
  const float wscale = static_cast<float>(std::pow(id, -0.5) * std::pow(ih, -0.5));
  for (float& v : weights) v *= wscale;

  std::vector<std::vector<int>> chosen(n);
  pool().parallel_for(n, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const long long n_vis = (pos0 + static_cast<long long>(t) + 1) / w.compressor.ratio;
      std::vector<float> score(n_vis, 0.0f);
      const float* qt = q.data() + t * ih * id;
      const float* wt = weights.data() + t * ih;
      for (long long b = 0; b < n_vis; ++b) {
        const float* k = keys.entry(b);
        float acc = 0;
        for (int h = 0; h < ih; ++h) {
          const float* qh = qt + static_cast<size_t>(h) * id;
          float dot = 0;
          for (int d = 0; d < id; ++d) dot += qh[d] * k[d];
          acc += std::max(dot, 0.0f) * wt[h];
        }
        score[b] = acc;
      }
      chosen[t] = topk_indices(score, c.index_topk);
    }
  });
  return chosen;
}

}  // namespace dsv4
