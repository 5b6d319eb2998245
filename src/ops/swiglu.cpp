#include "ops/swiglu.h"

#include "core/check.h"

namespace dsv4 {

void swiglu(std::span<const float> gate, std::span<const float> up, float limit, std::span<float> y) {
  DSV4_CHECK(up.size() == gate.size() && y.size() == gate.size(), "swiglu: ", gate.size(), " gates, ", up.size(),
             " ups and ", y.size(), " outputs");
  for (size_t i = 0; i < gate.size(); ++i) y[i] = swiglu(gate[i], up[i], limit);
}

}  // namespace dsv4
