// Walsh-Hadamard rotation in Sylvester order, scaled by d^-0.5 (an orthogonal transform), as
// the reference's rotate_activation. d must be a power of two.
#pragma once

#include <span>

namespace dsv4 {

void hadamard_rotate(std::span<float> x);  // in place, x [d]

}  // namespace dsv4
