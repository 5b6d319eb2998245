// libFuzzer target: a JSON schema and a document, split at the first NUL byte. The schema
// compiles or is refused with Error; a compiled schema's matcher takes the document byte by
// byte, and whatever it accepts as whole must parse as JSON (nlohmann: a number beyond
// double's range throws there too) and spell no chat-format marker. A crash, another exception
// or an accepted document that breaks either is a finding.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/check.h"
#include "grammar/chat_markers.h"
#include "grammar/json_matcher.h"
#include "grammar/json_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find('\0');
  const std::string schema_text = cut == std::string::npos ? input : input.substr(0, cut);
  const std::string doc = cut == std::string::npos ? std::string() : input.substr(cut + 1);
  std::shared_ptr<const dsv4::JsonSchema> schema;
  try {
    const nlohmann::json s = nlohmann::json::parse(schema_text, nullptr, /*allow_exceptions=*/false);
    schema = s.is_discarded() ? dsv4::JsonSchema::any_object() : dsv4::JsonSchema::compile(s);
  } catch (const dsv4::Error&) {
    return 0;
  }
  dsv4::JsonMatcher m(*schema);
  size_t fed = 0;
  while (fed < doc.size() && m.feed(static_cast<uint8_t>(doc[fed]))) ++fed;
  if (fed == doc.size() && m.can_end()) {
    try {
      (void)nlohmann::json::parse(doc);
    } catch (const nlohmann::json::exception&) {
      __builtin_trap();
    }
    if (dsv4::MarkerWindow::contains_marker(doc)) __builtin_trap();
  }
  return 0;
}
