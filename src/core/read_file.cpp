#include "core/read_file.h"

#include <fstream>
#include <sstream>

#include "core/check.h"

namespace dsv4 {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV4_CHECK(in.good(), path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  DSV4_CHECK(!in.bad(), path, ": read failed");
  return ss.str();
}

}  // namespace dsv4
