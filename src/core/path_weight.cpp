#include "core/path_weight.h"

#include <exception>

namespace dsv4 {

PathWeight split_path_weight(const std::string& spec) {
  PathWeight out{spec};
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon + 1 == spec.size()) return out;
  try {
    size_t used = 0;
    const double w = std::stod(spec.substr(colon + 1), &used);
    if (used == spec.size() - colon - 1) out.path = spec.substr(0, colon), out.weight = w;
  } catch (const std::exception&) {
  }
  return out;
}

}  // namespace dsv4
