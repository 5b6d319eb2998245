// libFuzzer target: tokenizer.json text. Loading either gives a tokenizer that can encode and
// decode, or throws dsv4::Error.
#include <cstdint>
#include <string>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dsv4::Tokenizer t = dsv4::Tokenizer::from_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    (void)t.decode(t.encode("Hello, world! 123 ünï"));
  } catch (const dsv4::Error&) {
  }
  return 0;
}
