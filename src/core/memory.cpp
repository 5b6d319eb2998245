#include "core/memory.h"

#include <fstream>
#include <sstream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace dsv4 {

MachineMemory machine_memory() {
  MachineMemory m;
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    double kib = 0;
    if (!(fields >> key >> kib)) continue;
    if (key == "MemTotal:") m.total = kib * 1024;
    else if (key == "MemAvailable:") m.available = kib * 1024;
  }
  return m;
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest: bigger blocks are still mmap'd
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace dsv4
