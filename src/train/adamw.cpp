#include "train/adamw.h"

#include <cmath>

#include "core/check.h"

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

}  // namespace dsv4
