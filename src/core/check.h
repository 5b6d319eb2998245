// Errors. Everything that can go wrong because of input (a file, a flag, a config) throws
// dsv4::Error with a message naming what and where; the command-line front end prints it and
// exits non-zero. DSV4_CHECK is for such conditions, never compiled out.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Builds a message from any streamable pieces: fail("tensor ", name, " has shape ", s).
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}

std::string shape_str(const std::vector<long long>& shape);

}  // namespace dsv4

#define DSV4_CHECK(cond, ...)          \
  do {                                 \
    if (!(cond)) ::dsv4::fail(__VA_ARGS__); \
  } while (0)
