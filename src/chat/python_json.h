// JSON text exactly as Python's json.dumps(value, ensure_ascii=False) writes it, which is what
// the official DeepSeek-V4 encoder puts into prompts (tool schemas, response formats, non-string
// tool arguments) and into parsed tool-call arguments. nlohmann's dump differs in separators
// (", " and ": " here), float formatting (Python's repr) and escaping, so the model would see
// other bytes than it was trained on. Parsing JSON is nlohmann's job, not this file's.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace dsv4::chat {

// json.dumps(value, ensure_ascii=False): keys in stored order, ", " and ": " separators,
// floats as repr(float) (NaN/Infinity as Python writes them), non-ASCII bytes kept raw.
std::string to_python_json(const nlohmann::ordered_json& value);

// The body of a JSON string literal without the quotes: '"' and '\\' escaped, \n \r \t \b \f by
// name, other bytes below 0x20 as \u00xx; every other byte copied. Byte-wise, so a string may be
// escaped in pieces (the streaming parser does).
void append_python_json_escaped(std::string& out, std::string_view s);

// repr(float): the shortest digits that round-trip; exponent form ("1e-05", "1.5e+16") when the
// decimal exponent is below -4 or at least 16, else fixed with at least one decimal ("100.0").
std::string python_float_repr(double d);

}  // namespace dsv4::chat
