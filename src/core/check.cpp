// Small helpers for error messages.
#include "core/check.h"

namespace dsv4 {

std::string shape_str(const std::vector<long long>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace dsv4
