// Recomputes the layer forward keeping every intermediate (q before and after its norms, kv,
// o, the low-rank output), then walks it back: wo_b, wo_a per group, each (token, head) over its
// window, then the kv and q paths.
#include "train/attention_backward.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "ops/rope.h"
#include "train/backward.h"

namespace dsv4 {

void attention_swa_backward(const AttentionF32& a, const Rope& rope, std::span<const float> x, int n,
                            std::span<const float> dout, AttentionF32& g, std::span<float> dx) {
  const int dim = a.dim, H = a.heads, D = a.head_dim, R = a.o_lora, G = a.groups, gw = H / G * D, rd = rope.dim();
  DSV4_CHECK(x.size() == size_t(n) * dim && dout.size() == x.size() && dx.size() == x.size(),
             "attention_swa_backward: sizes do not match");
  // Forward, keeping every intermediate.
  std::vector<float> qa(size_t(n) * a.q_lora), qn(qa.size()), qb(size_t(n) * H * D), q(qb.size());
  linear_forward(x, a.wq_a, n, dim, a.q_lora, qa);
  rmsnorm_forward(qa, a.q_norm, a.eps, a.q_lora, qn);
  linear_forward(qn, a.wq_b, n, a.q_lora, H * D, qb);
  rmsnorm_forward(qb, {}, a.eps, D, q);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h) rope.apply(q.data() + (size_t(t) * H + h) * D + D - rd, t);
  std::vector<float> kva(size_t(n) * D), kv(kva.size());
  linear_forward(x, a.wkv, n, dim, D, kva);
  rmsnorm_forward(kva, a.kv_norm, a.eps, D, kv);
  for (int t = 0; t < n; ++t) rope.apply(kv.data() + size_t(t) * D + D - rd, t);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto first_key = [&](int t) { return std::max(0, t - a.window + 1); };
  std::vector<float> o(size_t(n) * H * D);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h) {
      const int k0 = first_key(t), nk = t - k0 + 1;
      attention_head_forward(std::span<const float>(q).subspan((size_t(t) * H + h) * D, D),
                             std::span<const float>(kv).subspan(size_t(k0) * D, size_t(nk) * D), nk, D, scale,
                             a.attn_sink[h], rope, t, std::span<float>(o).subspan((size_t(t) * H + h) * D, D));
    }
  // low [n, G * R]: group g of o times wo_a rows [g R, (g + 1) R).
  std::vector<float> low(size_t(n) * G * R), og(size_t(n) * gw), part(size_t(n) * R);
  auto group_input = [&](int grp) {
    for (int t = 0; t < n; ++t)
      std::copy_n(o.begin() + size_t(t) * H * D + size_t(grp) * gw, gw, og.begin() + size_t(t) * gw);
  };
  auto wo_a_rows = [&](const std::vector<float>& w, int grp) {
    return std::span<const float>(w).subspan(size_t(grp) * R * gw, size_t(R) * gw);
  };
  for (int grp = 0; grp < G; ++grp) {
    group_input(grp);
    linear_forward(og, wo_a_rows(a.wo_a, grp), n, gw, R, part);
    for (int t = 0; t < n; ++t) std::copy_n(part.begin() + size_t(t) * R, R, low.begin() + size_t(t) * G * R + size_t(grp) * R);
  }
  // Backward.
  std::vector<float> dlow(low.size());
  linear_backward(low, a.wo_b, dout, n, G * R, dim, dlow, g.wo_b);
  std::vector<float> d_o(o.size(), 0.0f), dog(og.size()), dpart(part.size());
  for (int grp = 0; grp < G; ++grp) {
    group_input(grp);
    for (int t = 0; t < n; ++t) std::copy_n(dlow.begin() + size_t(t) * G * R + size_t(grp) * R, R, dpart.begin() + size_t(t) * R);
    std::span<float> gw_rows(g.wo_a.data() + size_t(grp) * R * gw, size_t(R) * gw);
    linear_backward(og, wo_a_rows(a.wo_a, grp), dpart, n, gw, R, dog, gw_rows);
    for (int t = 0; t < n; ++t)
      std::copy_n(dog.begin() + size_t(t) * gw, gw, d_o.begin() + size_t(t) * H * D + size_t(grp) * gw);
  }
  std::vector<float> dq(q.size(), 0.0f), dkv(kv.size(), 0.0f), dqh(D);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h) {
      const int k0 = first_key(t), nk = t - k0 + 1;
      g.attn_sink[h] += attention_head_backward(
          std::span<const float>(q).subspan((size_t(t) * H + h) * D, D),
          std::span<const float>(kv).subspan(size_t(k0) * D, size_t(nk) * D), nk, D, scale, a.attn_sink[h], rope, t,
          std::span<const float>(d_o).subspan((size_t(t) * H + h) * D, D), dqh,
          std::span<float>(dkv).subspan(size_t(k0) * D, size_t(nk) * D));
      std::copy(dqh.begin(), dqh.end(), dq.begin() + (size_t(t) * H + h) * D);
    }
  // kv path: RoPE, kv_norm, wkv.
  for (int t = 0; t < n; ++t) rope_backward(rope, std::span<float>(dkv).subspan(size_t(t) * D + D - rd, rd), t, false);
  std::vector<float> dkva(kva.size()), dx_kv(dx.size());
  rmsnorm_backward(kva, a.kv_norm, a.eps, D, dkv, dkva, g.kv_norm);
  linear_backward(x, a.wkv, dkva, n, dim, D, dx_kv, g.wkv);
  // q path: RoPE, per-head norm, wq_b, q_norm, wq_a.
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h)
      rope_backward(rope, std::span<float>(dq).subspan((size_t(t) * H + h) * D + D - rd, rd), t, false);
  std::vector<float> dqb(qb.size()), dqn(qn.size()), dqa(qa.size());
  rmsnorm_backward(qb, {}, a.eps, D, dq, dqb, {});
  linear_backward(qn, a.wq_b, dqb, n, a.q_lora, H * D, dqn, g.wq_b);
  rmsnorm_backward(qa, a.q_norm, a.eps, a.q_lora, dqn, dqa, g.q_norm);
  linear_backward(x, a.wq_a, dqa, n, dim, a.q_lora, dx, g.wq_a);
  for (size_t i = 0; i < dx.size(); ++i) dx[i] += dx_kv[i];
}

}  // namespace dsv4
