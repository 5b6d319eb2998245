// libFuzzer target: arbitrary bytes through the real DeepSeek tokenizer (shared/tokenizer, or
// DSV4_FUZZ_TOKENIZER). Invalid UTF-8 is an Error; valid text must decode back to itself.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "core/read_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv4::Tokenizer tok = [] {
    const char* path = std::getenv("DSV4_FUZZ_TOKENIZER");
    const std::string p = path ? path : DSV4_SHARED_DIR "/tokenizer/deepseek-v3/tokenizer.json";
    return dsv4::Tokenizer::from_json(dsv4::read_file(p), p);
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const bool valid = dsv4::utf8_invalid_at(text) == std::string::npos;
  try {
    const std::vector<int> ids = tok.encode(text);
    if (!valid || tok.decode(ids) != text) __builtin_trap();
  } catch (const dsv4::Error&) {
    if (valid) __builtin_trap();
  }
  return 0;
}
