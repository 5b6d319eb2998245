// Python-compatible JSON writing; see python_json.h.
#include "chat/python_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/check.h"

namespace dsv4::chat {

void append_python_json_escaped(std::string& out, std::string_view s) {
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
}

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  // to_chars without a precision gives the shortest round-trip digits, as Python's repr does;
  // only the layout around them differs.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string_view sci(buf, res.ptr - buf);  // "-1.2345e+02"
  const size_t e_pos = sci.find('e');
  std::string out, digits;
  for (const char c : sci.substr(0, e_pos)) {
    if (c == '-') out += '-';
    else if (c != '.') digits += c;
  }
  int exponent = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+'), sci.data() + sci.size(), exponent);
  const int n = static_cast<int>(digits.size());
  const int decpt = exponent + 1;  // value = 0.<digits> * 10^decpt
  // Built by appending: GCC 12 warns falsely (-Wrestrict) on "0." + std::string(...).
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) out.append(".").append(digits, 1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += e;
  } else if (decpt <= 0) {
    out.append("0.").append(-decpt, '0').append(digits);
  } else if (decpt < n) {
    out.append(digits, 0, decpt).append(".").append(digits, decpt);
  } else {
    out.append(digits).append(decpt - n, '0').append(".0");
  }
  return out;
}

namespace {

void write(std::string& out, const nlohmann::ordered_json& v) {
  using value_t = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case value_t::null: out += "null"; break;
    case value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case value_t::number_integer: out += std::to_string(v.get<int64_t>()); break;
    case value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); break;
    case value_t::number_float: out += python_float_repr(v.get<double>()); break;
    case value_t::string:
      out += '"';
      append_python_json_escaped(out, v.get_ref<const std::string&>());
      out += '"';
      break;
    case value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        write(out, e);
      }
      out += ']';
      break;
    }
    case value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += '"';
        append_python_json_escaped(out, key);
        out += "\": ";
        write(out, e);
      }
      out += '}';
      break;
    }
    case value_t::binary:
    case value_t::discarded:
      // Neither comes out of a JSON parse; Python has no JSON form for them either.
      fail("a binary or discarded JSON value has no JSON text");
  }
}

}  // namespace

std::string to_python_json(const nlohmann::ordered_json& value) {
  std::string out;
  write(out, value);
  return out;
}

}  // namespace dsv4::chat
