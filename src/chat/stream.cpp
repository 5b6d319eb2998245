// The streaming completion parser; see stream.h. Each state reads up to the nearest of its stop
// strings, as the one-shot parser does, but over a buffer that may end anywhere: a buffer tail
// that could still grow into a stop is held back, and the stop taken at a position is the
// longest one that can still match there.
#include "chat/stream.h"

#include <algorithm>
#include <array>
#include <span>
#include <utility>

#include <nlohmann/json.hpp>

#include "chat/python_json.h"
#include "core/check.h"

namespace dsv4::chat {

namespace {

constexpr size_t npos = std::string_view::npos;

// Reasoning and content end at these; the generic DSML tags catch markup outside a block.
constexpr std::string_view dsml_open = "<｜DSML｜", dsml_close_open = "</｜DSML｜";
constexpr std::array<std::string_view, 9> text_stops = {think_end,   tool_calls_start, tool_calls_open,
                                                        eos_token,   think_start,      bos_token,
                                                        dsml_open,   dsml_close_open,  dsml_token};
constexpr size_t max_text_stop = std::max_element(text_stops.begin(), text_stops.end(), [](auto a, auto b) {
                                    return a.size() < b.size();
                                  })->size();
constexpr std::array<std::string_view, 2> block_stops = {invoke_open, tool_calls_close};
constexpr std::array<std::string_view, 2> invoke_stops = {parameter_open, invoke_close};
constexpr std::array<std::string_view, 3> header_stops = {string_true_marker, string_false_marker, parameter_close};
// A value ends in "<" + "/｜DSML｜parameter" (or "<\n" + it, which the official regex also
// allows); a bare "/｜DSML｜parameter" is a format error.
constexpr std::string_view value_end = "</｜DSML｜parameter", value_end_newline = "<\n/｜DSML｜parameter";
constexpr std::array<std::string_view, 3> value_stops = {value_end, value_end_newline, parameter_close};
constexpr std::array<std::string_view, 1> eos_stops = {eos_token};

struct Scan {
  size_t pos = npos;  // where the stop found starts; npos when none yet
  size_t which = 0;   // its index in the stop list
  size_t safe = 0;    // bytes before this offset are certainly not part of a stop
};

// The nearest stop in buf. At each position, a buffer tail that is a proper prefix of some stop
// might still become that (longer) stop, so nothing is decided there until more text comes.
Scan scan(std::string_view buf, std::span<const std::string_view> stops) {
  for (size_t p = 0; p < buf.size(); ++p) {
    const std::string_view rest = buf.substr(p);
    size_t best = npos;
    bool partial = false;
    for (size_t i = 0; i < stops.size(); ++i) {
      if (rest.starts_with(stops[i])) {
        if (best == npos || stops[i].size() > stops[best].size()) best = i;
      } else if (stops[i].starts_with(rest)) {
        partial = true;
      }
    }
    if (partial) return {npos, 0, p};
    if (best != npos) return {p, best, p};
  }
  return {npos, 0, buf.size()};
}

// end, moved back so that s[0, end) does not stop inside a UTF-8 character, so each delta is
// whole characters (tokens often carry half of one).
size_t utf8_boundary(std::string_view s, size_t end) {
  for (size_t k = 1; k <= 3 && k <= end; ++k) {
    const auto c = static_cast<unsigned char>(s[end - k]);
    if ((c & 0xC0) == 0x80) continue;
    const size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return len > k ? end - k : end;
  }
  return end;
}

bool is_prefix_of(std::string_view s, std::string_view of) { return of.starts_with(s); }

}  // namespace

StreamParser::StreamParser(ThinkingMode mode, bool whole_calls)
    : state_(mode == ThinkingMode::thinking ? State::reasoning : State::content), whole_calls_(whole_calls) {}

StreamDelta StreamParser::feed(std::string_view piece) {
  DSV4_CHECK(!finished_, "StreamParser::feed called after finish()");
  buf_ += piece;
  fed_ += piece.size();
  if (whole_calls_ && in_block()) block_raw_ += piece;
  while (step()) {
  }
  if (whole_calls_ && in_block()) {
    // A value takes any text, the token too; searched for in what is new.
    const size_t from = eos_searched_ >= eos_token.size() ? eos_searched_ - eos_token.size() + 1 : 0;
    eos_searched_ = block_raw_.size();
    break_at_eos(from);
  }
  while (state_ == State::raw && step()) {  // a break stops the loop above; the text goes on
  }
  return std::exchange(delta_, StreamDelta{});
}

StreamDelta StreamParser::finish() {
  DSV4_CHECK(!finished_, "StreamParser::finish called twice");
  finished_ = true;
  if (whole_calls_ && in_block()) {
    error_ = "the text ended inside a tool call";
    break_block();
  }
  while (state_ == State::raw && step()) {
  }
  // Whatever is held back could only have been the start of a tag; it is dropped. Plain text
  // held for an incomplete UTF-8 character is kept.
  if (state_ == State::raw) {
    emit_text(buf_);  // what was held as a possible end-of-sentence token is text after all
  } else if (state_ == State::reasoning || state_ == State::content) {
    const size_t safe = scan(tail_ + buf_, text_stops).safe;
    emit_text(std::string_view(buf_).substr(0, safe > tail_.size() ? safe - tail_.size() : 0));
  } else if (state_ == State::param_value) {
    emit_value(std::string_view(buf_).substr(0, scan(buf_, value_stops).safe));
  } else if (state_ == State::call_name) {
    // The official parser takes a name that runs to the end of the text, with no arguments.
    if (std::optional<std::string> name = match_invoke_name(buf_)) begin_call(std::move(*name));
  }
  buf_.clear();
  if (value_open_) emit_arguments("\"");
  value_open_ = false;
  if (call_open_) close_call();
  truncated_ = state_ != State::done && state_ != State::failed;
  return std::exchange(delta_, StreamDelta{});
}

void StreamParser::fail(const std::string& why) {
  error_ = why + " (within the first " + std::to_string(fed_) + " bytes of the completion)";
  if (!whole_calls_ || state_ == State::done) {
    state_ = State::failed;
    buf_.clear();
  } else if (in_block()) {
    break_block();
  } else {
    state_ = State::raw;  // what is buffered is the text that broke the format: content now
  }
}

bool StreamParser::break_at_eos(size_t from) {
  const size_t at = block_raw_.find(eos_token, from);
  if (at == npos || at > block_raw_.find(tool_calls_close)) return false;
  error_ = "the end-of-sentence token inside a tool call (within the first " + std::to_string(fed_) +
           " bytes of the completion)";
  block_raw_.resize(at + eos_token.size());
  break_block();
  return true;
}

void StreamParser::break_block() {
  message_.tool_calls.resize(block_first_call_);
  held_.clear();
  param_names_.clear();
  value_open_ = call_open_ = false;
  buf_ = std::exchange(block_raw_, {});
  tail_.clear();
  state_ = State::raw;
}

// whole_calls after a break: text as content, up to the end-of-sentence token.
bool StreamParser::step_raw() {
  const Scan s = scan(buf_, eos_stops);
  if (s.pos == npos) {
    const size_t n = utf8_boundary(buf_, s.safe);
    emit_text(std::string_view(buf_).substr(0, n));
    buf_.erase(0, n);
    return false;
  }
  emit_text(std::string_view(buf_).substr(0, s.pos));
  buf_.erase(0, s.pos + eos_token.size());
  state_ = State::done;
  return true;
}

void StreamParser::emit_text(std::string_view s) {
  if (s.empty()) return;
  // Text after a break (State::raw) is content.
  std::string& whole = state_ == State::reasoning ? message_.reasoning_content : message_.content;
  std::string& delta = state_ == State::reasoning ? delta_.reasoning_content : delta_.content;
  whole += s;
  delta += s;
  tail_ += s;
  if (tail_.size() > max_text_stop) tail_.erase(0, tail_.size() - max_text_stop);
}

void StreamParser::begin_call(std::string name) {
  message_.tool_calls.push_back({name, ""});
  (whole_calls_ ? held_ : delta_.tool_calls).push_back({message_.tool_calls.size() - 1, true, std::move(name), ""});
  param_names_.clear();
  call_open_ = true;
  emit_arguments("{");
}

void StreamParser::emit_arguments(std::string_view s) {
  if (s.empty()) return;
  const size_t index = message_.tool_calls.size() - 1;
  message_.tool_calls.back().arguments += s;
  std::vector<ToolCallDelta>& out = whole_calls_ ? held_ : delta_.tool_calls;
  if (out.empty() || out.back().index != index) out.push_back({index, false, "", ""});
  out.back().arguments += s;
}

void StreamParser::emit_value(std::string_view s) {
  if (!value_is_string_) return emit_arguments(s);
  std::string escaped;
  append_python_json_escaped(escaped, s);
  emit_arguments(escaped);
}

bool StreamParser::close_call() {
  emit_arguments("}");
  call_open_ = false;
  // whole_calls: a call whose arguments are not JSON (a string="false" value that is not) is
  // no call a client can run.
  const ToolCall& call = message_.tool_calls.back();
  if (whole_calls_ && !nlohmann::json::accept(call.arguments)) {
    fail("tool call '" + call.name + "': its arguments are not JSON: " + call.arguments.substr(0, 80));
    return false;
  }
  return true;
}

// Text states: everything before the nearest stop is reasoning or content. The scan also covers
// the last bytes already written to the field: once a stray tag has been cut out, the text on
// either side of it meets, and "<th" written before "<think>" + "ink>" must not become a tag.
bool StreamParser::step_text() {
  const size_t t = tail_.size();
  const Scan s = scan(tail_ + buf_, text_stops);
  if (s.pos == npos) {
    const size_t n = utf8_boundary(buf_, s.safe > t ? s.safe - t : 0);
    emit_text(std::string_view(buf_).substr(0, n));
    buf_.erase(0, n);
    return false;
  }
  const std::string_view stop = text_stops[s.which];
  if (s.pos < t) {
    // A tag that begins in written text can only have formed across a cut; its rest goes too.
    buf_.erase(0, s.pos + stop.size() - t);
    return true;
  }
  const size_t pos = s.pos - t;
  if (stop == think_start || stop == bos_token || (stop == think_end && state_ == State::content)) {
    // A stray tag is cut out and the text around it scanned again as one.
    buf_.erase(pos, stop.size());
    return true;
  }
  emit_text(std::string_view(buf_).substr(0, pos));
  buf_.erase(0, pos + stop.size());
  tail_.clear();
  if (stop == think_end) {
    state_ = State::content;
  } else if (stop == tool_calls_start || stop == tool_calls_open) {
    state_ = State::calls_between;  // also when "</think>" never came
    if (whole_calls_) {
      block_raw_ = std::string(stop) + buf_;
      block_first_call_ = message_.tool_calls.size();
      eos_searched_ = 0;
    }
  } else if (stop == eos_token) {
    state_ = State::done;
  } else {
    if (whole_calls_) buf_.insert(0, stop);  // the stray markup stays, as text
    fail("DSML markup outside a tool-call block");
  }
  return true;
}

// States whose text before the stop must be exactly `expected` (">\n" between tags, nothing
// before the end-of-sentence token). Returns the stop's index, or npos when waiting or failed;
// text that can no longer turn out right fails at once.
size_t StreamParser::step_fixed(std::span<const std::string_view> stops, std::string_view expected,
                                const char* complaint) {
  const Scan s = scan(buf_, stops);
  const std::string_view before = std::string_view(buf_).substr(0, s.pos == npos ? s.safe : s.pos);
  if (s.pos == npos ? !is_prefix_of(before, expected) : before != expected) {
    fail(std::string(complaint) + ", got '" + std::string(before.substr(0, 80)) + "'");
    return npos;
  }
  if (s.pos == npos) return npos;
  buf_.erase(0, s.pos + stops[s.which].size());
  return s.which;
}

bool StreamParser::step() {
  switch (state_) {
    case State::reasoning:
    case State::content:
      return step_text();

    case State::calls_between: {
      const size_t which = step_fixed(block_stops, ">\n", "tool call format error: expected '>\\n' between tags");
      if (which == npos) return false;
      state_ = which == 0 ? State::call_name : State::after_calls;
      if (state_ == State::after_calls && whole_calls_) {  // the block is whole: its calls go out
        if (break_at_eos(0)) return true;
        delta_.tool_calls.insert(delta_.tool_calls.end(), held_.begin(), held_.end());
        held_.clear();
        block_raw_.clear();
      }
      return true;
    }

    case State::call_name: {
      const Scan s = scan(buf_, invoke_stops);
      if (s.pos == npos) return false;
      std::optional<std::string> name = match_invoke_name(std::string_view(buf_).substr(0, s.pos));
      if (!name) {
        fail("tool name format error: expected ' name=\"NAME\">\\n' after <｜DSML｜invoke");
        return false;
      }
      begin_call(std::move(*name));
      buf_.erase(0, s.pos + invoke_stops[s.which].size());
      if (s.which == 0) {
        state_ = State::param_header;
      } else if (close_call()) {
        state_ = State::calls_between;
      }
      return true;
    }

    case State::param_header: {
      const size_t n = std::min(buf_.size(), parameter_name_prefix.size());
      if (buf_.compare(0, n, parameter_name_prefix.substr(0, n)) != 0) {
        fail("parameter format error: expected ' name=\"' after <｜DSML｜parameter");
        return false;
      }
      if (n < parameter_name_prefix.size()) return false;
      const Scan s = scan(std::string_view(buf_).substr(n), header_stops);
      if (s.pos == npos) return false;
      if (s.which == 2) {
        fail("parameter format error: no string=\"true|false\" before </｜DSML｜parameter");
        return false;
      }
      std::string name = buf_.substr(n, s.pos);
      for (const std::string& seen : param_names_) {
        if (seen == name) {
          fail("duplicate parameter name '" + name + "'");
          return false;
        }
      }
      emit_arguments(argument_key_text(name, param_names_.empty()));
      param_names_.push_back(std::move(name));
      value_is_string_ = s.which == 0;
      if (value_is_string_) emit_arguments("\"");
      value_open_ = value_is_string_;
      buf_.erase(0, n + s.pos + header_stops[s.which].size());
      state_ = State::param_value;
      return true;
    }

    case State::param_value: {
      const Scan s = scan(buf_, value_stops);
      if (s.pos == npos) {
        const size_t n = utf8_boundary(buf_, s.safe);
        emit_value(std::string_view(buf_).substr(0, n));
        buf_.erase(0, n);
        return false;
      }
      if (s.which == 2) {
        fail("parameter format error: the value must end with '<' before /｜DSML｜parameter");
        return false;
      }
      emit_value(std::string_view(buf_).substr(0, s.pos));
      if (value_open_) emit_arguments("\"");
      value_open_ = false;
      buf_.erase(0, s.pos + value_stops[s.which].size());
      state_ = State::param_close;
      return true;
    }

    case State::param_close: {
      const size_t which =
          step_fixed(invoke_stops, ">\n", "parameter format error: expected '>\\n' after </｜DSML｜parameter");
      if (which == npos) return false;
      if (which == 0) {
        state_ = State::param_header;
      } else if (close_call()) {
        state_ = State::calls_between;
      }
      return true;
    }

    case State::after_calls:
      if (step_fixed(eos_stops, "", "unexpected content after </｜DSML｜tool_calls>") == npos) return false;
      state_ = State::done;
      return true;

    case State::done:
      if (!buf_.empty()) fail("text after the end-of-sentence token");
      return false;

    case State::failed:
      buf_.clear();
      return false;

    case State::raw:
      return step_raw();
  }
  return false;
}

}  // namespace dsv4::chat
