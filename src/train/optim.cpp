// The optimizers in plain loops; Newton-Schulz's matrix products go through matmul_nt (the
// production float kernels), since it runs on every hidden matrix at every step.
#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "train/matmul.h"

namespace dsv4 {

void adamw_step(std::span<float> w, std::span<const float> g, AdamWState& s, const AdamWParams& p, float lr) {
  DSV4_CHECK(w.size() == g.size(), "adamw_step: ", w.size(), " weights but ", g.size(), " gradients");
  if (s.m.empty()) s.m.assign(w.size(), 0.0f), s.v.assign(w.size(), 0.0f);
  ++s.step;
  const double c1 = 1.0 - std::pow(p.beta1, s.step), c2 = 1.0 - std::pow(p.beta2, s.step);
  for (size_t i = 0; i < w.size(); ++i) {
    s.m[i] = p.beta1 * s.m[i] + (1 - p.beta1) * g[i];
    s.v[i] = p.beta2 * s.v[i] + (1 - p.beta2) * g[i] * g[i];
    const double update = (s.m[i] / c1) / (std::sqrt(s.v[i] / c2) + p.eps);
    w[i] = static_cast<float>(w[i] - lr * (update + p.weight_decay * w[i]));
  }
}

std::vector<float> newton_schulz(std::span<const float> g, int rows, int cols, int fast, int stable) {
  DSV4_CHECK(g.size() == static_cast<size_t>(rows) * cols, "newton_schulz: size does not match the shape");
  // Work on the wide orientation (r <= c) so that X X^T is the small Gram matrix.
  const bool tall = rows > cols;
  std::vector<float> x = tall ? transposed(g, rows, cols, rows) : std::vector<float>(g.begin(), g.end());
  const int r = tall ? cols : rows, c = tall ? rows : cols;
  double norm = 0;
  for (float v : x) norm += double(v) * v;
  norm = std::sqrt(norm) + 1e-7;  // ||X||_2 <= ||X||_F, so every singular value starts <= 1
  for (float& v : x) v = static_cast<float>(v / norm);
  std::vector<float> a(static_cast<size_t>(r) * r), aa(a.size()), b(a.size()), bx(x.size());
  for (int it = 0; it < fast + stable; ++it) {
    const bool f = it < fast;
    const float ka = f ? 3.4445f : 2.0f, kb = f ? -4.7750f : -1.5f, kc = f ? 2.0315f : 0.5f;
    matmul_nt(x, x, r, r, c, a);    // A = X X^T
    matmul_nt(a, a, r, r, r, aa);   // A^2 (A is symmetric)
    for (size_t i = 0; i < a.size(); ++i) b[i] = kb * a[i] + kc * aa[i];
    matmul_nt(b, transposed(x, r, c, r), r, c, r, bx);  // B X (B is symmetric)
    for (size_t i = 0; i < x.size(); ++i) x[i] = ka * x[i] + bx[i];
  }
  return tall ? transposed(x, r, c, r) : x;
}

void muon_step(std::span<float> w, int rows, int cols, std::span<const float> g, MuonState& s, const MuonParams& p,
               float lr) {
  DSV4_CHECK(w.size() == g.size() && w.size() == static_cast<size_t>(rows) * cols, "muon_step: [", rows, ", ", cols,
             "] does not match ", w.size(), " weights and ", g.size(), " gradients");
  if (s.momentum.empty()) s.momentum.assign(w.size(), 0.0f);
  std::vector<float> u(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    s.momentum[i] = p.momentum * s.momentum[i] + g[i];
    u[i] = p.nesterov ? g[i] + p.momentum * s.momentum[i] : s.momentum[i];
  }
  const std::vector<float> o = newton_schulz(u, rows, cols, p.ns_fast, p.ns_stable);
  // An orthogonal [rows, cols] matrix has RMS 1 / sqrt(max(rows, cols)).
  const double scale = p.update_rms * std::sqrt(static_cast<double>(std::max(rows, cols)));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(w[i] - lr * (scale * o[i] + p.weight_decay * w[i]));
}

float lr_at(long long step, long long warmup, long long total, float peak, float final_fraction) {
  if (step < warmup) return peak * static_cast<float>(step + 1) / static_cast<float>(warmup);
  if (step >= total) return peak * final_fraction;
  const double t = static_cast<double>(step - warmup) / std::max(1LL, total - warmup);
  return static_cast<float>(peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + std::cos(M_PI * t))));
}

double clip_grad_norm(std::span<const std::span<float>> grads, double max_norm) {
  double sq = 0;
  for (const auto& g : grads)
    for (float v : g) sq += double(v) * v;
  const double norm = std::sqrt(sq);
  if (norm > max_norm && norm > 0) {
    const float f = static_cast<float>(max_norm / norm);
    for (const auto& g : grads)
      for (float& v : g) v *= f;
  }
  return norm;
}

}  // namespace dsv4
