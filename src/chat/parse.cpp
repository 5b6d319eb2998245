// One-shot completion parser; see parse.h. It follows the official parser step by step (read up
// to the nearest of some stop strings, check what lay between), so that it accepts and rejects
// the same texts, including the truncated tool-call blocks the official parser lets through.
#include "chat/parse.h"

#include <algorithm>
#include <initializer_list>
#include <set>

#include "chat/python_json.h"
#include "core/check.h"

namespace dsv4::chat {

namespace {

// Python's str.isspace(), which is what \s matches in a str regex.
bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the UTF-8 character at s[i]; returns its length, 0 for an invalid sequence.
size_t decode_utf8(std::string_view s, size_t i, uint32_t& c) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char b0 = b(0);
  size_t n = b0 < 0x80 ? 1 : (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  c = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b(k) & 0x3F);
  }
  return n;
}

// A snippet of text for error messages.
std::string snippet(std::string_view s) {
  constexpr size_t max_len = 120;
  return s.size() <= max_len ? std::string(s) : std::string(s.substr(0, max_len)) + "...";
}

struct Stop {
  std::string_view before;  // text from the old index up to the stop (or to the end)
  int which;                // index of the stop found, -1 when none
};

// The official _read_until_stop: the nearest occurrence of any stop (the first listed wins a
// tie); index moves past it, or to the end when there is none.
// The stops are looked for in windows that double from 256 bytes: a stop that is far away (the
// block's closing tag, read after every call) would otherwise send each read to the end of the
// text, and 100,000 tool calls would take minutes instead of milliseconds.
Stop read_until_stop(std::string_view text, size_t& index, std::initializer_list<std::string_view> stops) {
  size_t best = std::string_view::npos;
  int which = -1;
  for (size_t window = 256;; window *= 2) {
    const size_t limit = std::min(text.size(), index + window);  // occurrences starting before it
    int i = 0;
    for (const std::string_view s : stops) {
      const size_t pos = text.substr(0, std::min(text.size(), limit + s.size() - 1)).find(s, index);
      if (pos != std::string_view::npos && pos < best) {
        best = pos;
        which = i;
      }
      ++i;
    }
    if (which >= 0 || limit == text.size()) break;
  }
  const size_t start = index;
  if (which < 0) {
    index = text.size();
    return {text.substr(start), -1};
  }
  index = best + stops.begin()[which].size();
  return {text.substr(start, best - start), which};
}

struct Parameter {
  std::string name, value;
  bool is_string;
};

// The official regex ^ name="(.*?)" string="(true|false)">(.*?)<$ over the text between
// "<｜DSML｜parameter" and "/｜DSML｜parameter".
std::optional<Parameter> match_parameter(std::string_view text) {
  if (!text.starts_with(parameter_name_prefix)) return std::nullopt;
  // The value ends in the "<" of the closing tag, or in "<\n" since $ also matches before a final newline.
  const size_t tail = text.ends_with("<\n") ? 2 : text.ends_with("<") ? 1 : 0;
  if (tail == 0) return std::nullopt;
  const size_t t = text.find(string_true_marker, parameter_name_prefix.size());
  const size_t f = text.find(string_false_marker, parameter_name_prefix.size());
  const bool is_string = t <= f;  // the earlier marker; npos when absent
  const size_t pos = is_string ? t : f;
  if (pos == std::string_view::npos) return std::nullopt;
  const size_t value_start = pos + (is_string ? string_true_marker : string_false_marker).size();
  if (value_start > text.size() - tail) return std::nullopt;
  return Parameter{std::string(text.substr(parameter_name_prefix.size(), pos - parameter_name_prefix.size())),
                   std::string(text.substr(value_start, text.size() - tail - value_start)), is_string};
}

// The official parse_tool_calls, from just after "\n\n<｜DSML｜tool_calls".
std::vector<ToolCall> parse_tool_calls(std::string_view text, size_t& index) {
  std::vector<ToolCall> calls;
  while (index < text.size()) {
    const Stop open = read_until_stop(text, index, {invoke_open, tool_calls_close});
    DSV4_CHECK(open.before == ">\n", "tool call format error: expected '>\\n' but got '", snippet(open.before), "'");
    if (open.which == 1) break;
    DSV4_CHECK(open.which == 0, "tool call block ends without </｜DSML｜tool_calls>");

    Stop head = read_until_stop(text, index, {parameter_open, invoke_close});
    const std::optional<std::string> name = match_invoke_name(head.before);
    DSV4_CHECK(name, "tool name format error: expected ' name=\"NAME\">\\n' after <｜DSML｜invoke, got '",
               snippet(head.before), "'");
    std::string arguments = "{";
    std::set<std::string> seen;
    while (head.which == 0) {
      const Stop body = read_until_stop(text, index, {parameter_close});
      const std::optional<Parameter> p = match_parameter(body.before);
      DSV4_CHECK(p, "parameter format error in tool call '", *name,
                 "': expected ' name=\"NAME\" string=\"true|false\">VALUE</｜DSML｜parameter>', got '",
                 snippet(body.before), "'");
      DSV4_CHECK(seen.insert(p->name).second, "duplicate parameter name '", p->name, "' in tool call '",
                 *name, "'");
      arguments += argument_key_text(p->name, seen.size() == 1);
      if (p->is_string) {
        arguments += '"';
        append_python_json_escaped(arguments, p->value);
        arguments += '"';
      } else {
        arguments += p->value;
      }
      head = read_until_stop(text, index, {parameter_open, invoke_close});
      DSV4_CHECK(head.before == ">\n", "parameter format error in tool call '", *name,
                 "': expected '>\\n' after </｜DSML｜parameter but got '", snippet(head.before), "'");
    }
    calls.push_back({*name, arguments + "}"});
  }
  return calls;
}

}  // namespace

std::optional<std::string> match_invoke_name(std::string_view text) {
  size_t i = 0;
  uint32_t c = 0;
  while (i < text.size()) {
    const size_t n = decode_utf8(text, i, c);
    if (n == 0 || !is_python_space(c)) break;
    i += n;
  }
  constexpr std::string_view prefix = "name=\"";
  if (text.substr(i).compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string_view rest = text.substr(i + prefix.size());
  for (const std::string_view end : {std::string_view("\">\n\n"), std::string_view("\">\n")})
    if (rest.ends_with(end)) return std::string(rest.substr(0, rest.size() - end.size()));
  return std::nullopt;
}

std::string argument_key_text(std::string_view name, bool first) {
  std::string out = first ? "\"" : ", \"";
  append_python_json_escaped(out, name);
  return out + "\": ";
}

nlohmann::ordered_json ParsedMessage::to_json() const {
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (const ToolCall& c : tool_calls) {
    nlohmann::ordered_json fn = nlohmann::ordered_json::object();
    fn["name"] = c.name;
    fn["arguments"] = c.arguments;
    nlohmann::ordered_json call = nlohmann::ordered_json::object();
    call["type"] = "function";
    call["function"] = std::move(fn);
    calls.push_back(std::move(call));
  }
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  m["role"] = "assistant";
  m["content"] = content;
  m["reasoning_content"] = reasoning_content;
  m["tool_calls"] = std::move(calls);
  return m;
}

ParsedMessage parse_completion(std::string_view text, ThinkingMode mode) {
  ParsedMessage m;
  size_t index = 0;
  if (mode == ThinkingMode::thinking) {
    const Stop r = read_until_stop(text, index, {think_end, tool_calls_start});
    m.reasoning_content = r.before;
    DSV4_CHECK(r.which == 0, "invalid thinking format: missing </think>",
               r.which == 1 ? " before the tool-call block" : " (thinking mode)");
  }
  const Stop s = read_until_stop(text, index, {eos_token, tool_calls_start});
  m.content = s.before;
  if (s.which == 1) {
    m.tool_calls = parse_tool_calls(text, index);
    const Stop end = read_until_stop(text, index, {eos_token});
    DSV4_CHECK(end.before.empty(), "unexpected content after the tool calls: '", snippet(end.before), "'");
  } else {
    DSV4_CHECK(s.which == 0, "invalid format: missing the end-of-sentence token ", eos_token);
  }
  DSV4_CHECK(index == text.size(), "unexpected content after the end of the message: '",
             snippet(text.substr(index)), "'");
  for (const std::string_view token : {bos_token, eos_token, think_start, think_end, dsml_token}) {
    DSV4_CHECK(m.content.find(token) == std::string::npos, "unexpected special token '", token, "' in content");
    DSV4_CHECK(m.reasoning_content.find(token) == std::string::npos, "unexpected special token '", token,
               "' in reasoning content");
  }
  return m;
}

}  // namespace dsv4::chat
