// MoE routing in training: the backward of the sqrtsoftplus routing weights, and the
// auxiliary-loss-free balancing of the routing bias after each step.
#pragma once

#include <span>

namespace dsv4 {

// MoE routing weights of one token: s_e = sqrt(softplus(z_e)) of the gate logits z for the chosen
// experts (chosen by the biased scores, not differentiated), w = route_scale * s / sum(s).
// Given dL/dw for the chosen experts, accumulates dL/dz into dlogits.
void routing_weights_backward(std::span<const float> logits, std::span<const int> chosen, float route_scale,
                              std::span<const float> dweights, std::span<float> dlogits);

// DeepSeek's auxiliary-loss-free balancing: after a step whose tokens were routed `load[e]`
// times to expert e, bias[e] += gamma * sign(mean load - load[e]).
void update_routing_bias(std::span<float> bias, std::span<const long long> load, float gamma);

}  // namespace dsv4
