#include "core/write_file.h"

#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace dsv4 {

void close_checked(std::ofstream& f, const std::string& path) {
  errno = 0;
  f.close();
  DSV4_CHECK(!f.fail(), path, ": write failed (", errno ? std::strerror(errno) : "disk full?", ")");
}

void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary);
  DSV4_CHECK(f.is_open(), path, ": cannot open for writing");
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  close_checked(f, path);
}

}  // namespace dsv4
