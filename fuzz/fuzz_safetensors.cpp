// libFuzzer target: a safetensors file of arbitrary bytes (header length, JSON header, offsets,
// shapes, dtypes). Loading either succeeds, with every tensor inside the file and no two
// overlapping, or throws dsv4::Error; anything else (a crash, a sanitizer report) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/check.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/dsv4-fuzz-safetensors-" + std::to_string(getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    dsv4::SafetensorsFile file(path);
    for (const auto& [name, t] : file.tensors()) {
      volatile uint8_t sum = 0;  // touch the first and last byte of each tensor
      if (t.nbytes) sum = t.data[0] + t.data[t.nbytes - 1];
      (void)sum;
    }
  } catch (const dsv4::Error&) {
  }
  return 0;
}
