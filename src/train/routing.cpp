#include "train/routing.h"

#include <cmath>
#include <vector>

#include "core/check.h"
#include "model/moe.h"

namespace dsv4 {

void routing_weights_backward(std::span<const float> logits, std::span<const int> chosen, float route_scale,
                              std::span<const float> dweights, std::span<float> dlogits) {
  std::vector<double> s(chosen.size());
  double total = 0;
  for (size_t k = 0; k < chosen.size(); ++k) total += (s[k] = sqrt_softplus<double>(logits[chosen[k]]));
  double dot = 0;
  for (size_t k = 0; k < chosen.size(); ++k) dot += dweights[k] * s[k];
  for (size_t k = 0; k < chosen.size(); ++k) {
    // w_k = c s_k / T: dw/ds_k = c (1 / T) on its own, and -c s_l / T^2 through T.
    const double ds = route_scale * (dweights[k] / total - dot / (total * total));
    const double z = logits[chosen[k]];
    const double dsp = z > 20 ? 1.0 : 1.0 / (1.0 + std::exp(-z));  // softplus' = sigmoid
    dlogits[chosen[k]] += static_cast<float>(ds * dsp / (2 * s[k]));
  }
}

void update_routing_bias(std::span<float> bias, std::span<const long long> load, float gamma) {
  DSV4_CHECK(bias.size() == load.size(), "update_routing_bias: ", bias.size(), " biases for ", load.size(), " loads");
  double mean = 0;
  for (long long l : load) mean += static_cast<double>(l);
  mean /= static_cast<double>(load.size());
  for (size_t e = 0; e < bias.size(); ++e)
    bias[e] += gamma * (load[e] < mean ? 1.0f : load[e] > mean ? -1.0f : 0.0f);
}

}  // namespace dsv4
