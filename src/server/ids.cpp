// Random ids (ids.h): a generator per thread, seeded apart.
#include "server/ids.h"

#include <atomic>
#include <cstdio>
#include <random>

namespace dsv4 {

std::string random_id(const char* prefix) {
  static std::atomic<unsigned long long> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}() ^ (counter++ << 20));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

}  // namespace dsv4
