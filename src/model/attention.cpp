// Attention, scalar: projections through linear(), then one (token, head) at a time over the
// gathered keys, in a fixed key order (window by position, then compressed entries by index),
// so a token's result is the same in a prefill and in a decode step.
#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "model/compressor.h"
#include "model/indexer.h"
#include "ops/norm.h"
#include "quant/act_quant.h"

namespace dsv4 {

void layer_cache_init(const BlockWeights& b, const ModelConfig& c, LayerCache& cache) {
  cache.window.assign(static_cast<size_t>(c.sliding_window) * c.head_dim, 0.0f);
  cache.compressor = {};
  cache.indexer = {};
  if (b.attn.compressor) compressor_init(*b.attn.compressor, cache.compressor);
  if (b.attn.indexer) compressor_init(b.attn.indexer->compressor, cache.indexer);
}

void attention_forward(const AttentionWeights& w, int ratio, const ModelConfig& c, const Rope& rope,
                       std::span<const float> x, int n, long long pos0, bool act_quant,
                       LayerCache& cache, std::span<float> out) {
  const int H = c.num_attention_heads, D = c.head_dim, rd = c.qk_rope_head_dim;
  const int win = c.sliding_window, eps_dim = c.q_lora_rank;
  const float eps = c.rms_norm_eps;

  // q: [n, H, D]
  std::vector<float> qr(static_cast<size_t>(n) * eps_dim);
  linear(w.wq_a, x, n, qr, act_quant);
  rmsnorm(qr, w.q_norm, eps, eps_dim, qr);
  std::vector<float> q(static_cast<size_t>(n) * H * D);
  linear(w.wq_b, qr, n, q, act_quant);
  rmsnorm(q, {}, eps, D, q);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h) rope.apply(q.data() + (static_cast<size_t>(t) * H + h) * D + D - rd, pos0 + t);

  // kv: [n, D]
  std::vector<float> kv(static_cast<size_t>(n) * D);
  linear(w.wkv, x, n, kv, act_quant);
  rmsnorm(kv, w.kv_norm, eps, D, kv);
  for (int t = 0; t < n; ++t) {
    float* k = kv.data() + static_cast<size_t>(t) * D;
    rope.apply(k + D - rd, pos0 + t);
    if (act_quant) fp8_roundtrip(std::span<float>(k, D - rd), 64);
  }

  // Compressed entries (appended as blocks complete) and the indexer's choice per token.
  std::vector<std::vector<int>> chosen;
  if (w.indexer)
    chosen = indexer_forward(*w.indexer, c, x, qr, n, pos0, rope, act_quant, cache.indexer);
  if (w.compressor)
    compressor_forward(*w.compressor, x, n, pos0, rope, eps, CompressedRounding::fp8_nope, act_quant,
                       cache.compressor);

  // Attention per (token, head). Window keys come from this chunk or, before it, the ring.
  std::vector<float> o(static_cast<size_t>(n) * H * D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  pool().parallel_for(static_cast<size_t>(n), [&](size_t t0, size_t t1) {
    std::vector<const float*> keys;
    std::vector<float> p;
    for (size_t t = t0; t < t1; ++t) {
      const long long pos = pos0 + static_cast<long long>(t);
      keys.clear();
      for (long long kp = std::max(0LL, pos - win + 1); kp <= pos; ++kp)
        keys.push_back(kp >= pos0 ? kv.data() + (kp - pos0) * D
                                  : cache.window.data() + (kp % win) * D);
      if (ratio == 4) {
        for (int b : chosen[t]) keys.push_back(cache.compressor.entry(b));
      } else if (ratio > 0) {
        for (long long b = 0; b < (pos + 1) / ratio; ++b) keys.push_back(cache.compressor.entry(b));
      }
      p.resize(keys.size());
      for (int h = 0; h < H; ++h) {
        const float* qh = q.data() + (t * H + h) * D;
        float mx = -INFINITY;
        for (size_t j = 0; j < keys.size(); ++j) {
          float dot = 0;
          for (int d = 0; d < D; ++d) dot += qh[d] * keys[j][d];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        float sum = 0;
        for (size_t j = 0; j < keys.size(); ++j) sum += (p[j] = std::exp(p[j] - mx));
        sum += std::exp(w.attn_sink[h] - mx);  // the sink takes probability mass, adds no value
        float* oh = o.data() + (t * H + h) * D;
        std::fill(oh, oh + D, 0.0f);
        for (size_t j = 0; j < keys.size(); ++j)
          for (int d = 0; d < D; ++d) oh[d] += p[j] * keys[j][d];
        for (int d = 0; d < D; ++d) oh[d] /= sum;
        rope.apply(oh + D - rd, pos, /*inverse=*/true);
      }
    }
  });

  // The ring keeps the last `win` positions.
  for (int t = std::max(0, n - win); t < n; ++t)
    std::copy_n(kv.data() + static_cast<size_t>(t) * D, D,
                cache.window.data() + ((pos0 + t) % win) * D);

  // Grouped low-rank output: group g of o ([H / G * D]) times wo_a rows [g*R, (g+1)*R).
  const int G = c.o_groups, R = c.o_lora_rank, gw = H / G * D;
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
  linear(w.wo_b, low, n, out, act_quant);
}

}  // namespace dsv4
