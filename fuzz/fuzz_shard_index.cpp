// libFuzzer target: model.safetensors.index.json text. parse_shard_index either returns a
// weight map whose every shard is a plain file name of the checkpoint directory, or throws
// dsv4::Error naming the entry.
#include <cstdint>
#include <string>

#include "core/check.h"
#include "io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    for (const auto& [name, shard] : dsv4::parse_shard_index(std::string(reinterpret_cast<const char*>(data), size), "fuzz"))
      if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
          shard.find('\0') != std::string::npos)
        __builtin_trap();
  } catch (const dsv4::Error&) {
  }
  return 0;
}
