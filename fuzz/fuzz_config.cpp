// libFuzzer target: config.json text. parse_config either returns a config within its bounds
// or throws dsv4::Error naming the key.
#include <cstdint>
#include <string>

#include "core/check.h"
#include "io/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dsv4::ModelConfig c = dsv4::parse_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    if (c.n_layers_total() <= 0 || c.vocab_size <= 0) __builtin_trap();
  } catch (const dsv4::Error&) {
  }
  return 0;
}
