#include "grammar/json_matcher.h"

namespace dsv4 {

namespace {

using Kind = SchemaNode::Kind;

// Frame states, one range per kind of frame.
enum : uint8_t {
  kObjOpen = 10, kObjColon, kObjValue, kObjAfter, kObjNext,  // after '{', key, ':', value, ','
  kKeyDeclared = 20, kKeyFree,                                // inside a key
  kArrOpen = 30, kArrAfter, kArrNext,                         // after '[', an item, ','
  kString = 40,
  kNumMinus = 50, kNumZero, kNumInt, kNumDot, kNumFrac, kNumE, kNumESign, kNumExp,
  kLiteral = 60,
};

// Where a string is in an escape.
enum : uint8_t { kPlain = 0, kEscape = 1, kHex = 2, kHexSurrogate = 3 };

// Two exponent digits keep every number inside double's range: at most 16 digits times 1e99.
constexpr int kExpDigits = 2;

bool is_space(uint8_t b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
bool is_hex(uint8_t b) { return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }
uint64_t low_bits(size_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

}  // namespace

JsonMatcher::JsonMatcher(const JsonSchema& schema) {
  stack_.reserve(16);
  Frame root;
  root.node = schema.root();
  root.state = kRootBefore;
  stack_.push_back(root);
}

// Whitespace between tokens: a gap holds at most one line break (pretty printers never write
// blank lines) and kMaxWhitespace bytes in all.
bool JsonMatcher::space(uint8_t b) {
  if (!is_space(b) || ++ws_run_ > kMaxWhitespace) return false;
  if (b == '\n' || b == '\r') {
    const uint8_t bit = b == '\n' ? 1 : 2;
    if (ws_breaks_ & bit) return false;
    ws_breaks_ |= bit;
  }
  return true;
}

bool JsonMatcher::value_start(const SchemaNode* n, uint8_t b) {
  if (n->kind == Kind::choice) {
    for (const SchemaNode* x : n->branches)
      if (x->starts_with(b)) return value_start(x, b);
    return false;
  }
  if (!n->starts_with(b) || static_cast<int>(stack_.size()) >= kMaxDepth) return false;
  Frame f;
  f.node = n;
  switch (n->kind) {
    case Kind::object: f.state = kObjOpen; break;
    case Kind::array: f.state = kArrOpen; break;
    case Kind::string: f.state = kString; break;
    case Kind::number:
    case Kind::integer:
      f.state = b == '-' ? kNumMinus : b == '0' ? kNumZero : kNumInt;
      f.digits = b == '-' ? 0 : 1;
      break;
    case Kind::literals:
      f.state = kLiteral;
      f.pos = 1;
      for (size_t i = 0; i < n->literals.size(); ++i)
        if (static_cast<uint8_t>(n->literals[i][0]) == b) f.set |= uint64_t{1} << i;
      break;
    case Kind::choice: return false;
  }
  stack_.push_back(f);
  return true;
}

bool JsonMatcher::value_done() {
  stack_.pop_back();
  Frame& p = stack_.back();
  switch (p.state) {
    case kRootBefore: p.state = kRootAfter; return true;
    case kObjValue: p.state = kObjAfter; return true;
    case kArrOpen:
    case kArrNext:
      p.state = kArrAfter;
      ++p.count;
      return true;
    default: return false;
  }
}

bool JsonMatcher::feed(uint8_t b) {
  if (!markers_.push(b)) return false;
  if (!is_space(b)) ws_run_ = 0, ws_breaks_ = 0;
  for (;;) {
    Frame& f = stack_.back();
    bool ended = false;
    if (f.state == kRootBefore) return space(b) || value_start(f.node, b);
    if (f.state == kRootAfter) return space(b);
    if (f.state < kKeyDeclared) return step_object(f, b);
    if (f.state < kArrOpen) return step_key(f, b);
    if (f.state < kString) return step_array(f, b);
    if (f.state == kString) return step_string(f, b);
    const bool ok = f.state < kLiteral ? step_number(f, b, ended) : step_literals(f, b, ended);
    if (!ok) return false;
    if (!ended) return true;
    if (!value_done()) return false;  // the number or literal ended before b: b is the parent's
  }
}

bool JsonMatcher::step_object(Frame& f, uint8_t b) {
  const SchemaNode& n = *f.node;
  const uint64_t declared = low_bits(n.keys.size());
  const bool may_close = (n.required & ~f.set) == 0;
  const bool more_keys = n.free_value || (declared & ~f.set) != 0;
  switch (f.state) {
    case kObjOpen:
    case kObjNext:
      if (space(b)) return true;
      if (b == '}' && f.state == kObjOpen && may_close) return value_done();
      if (b != '"' || !more_keys || static_cast<int>(stack_.size()) >= kMaxDepth) return false;
      {
        Frame k;
        k.node = f.node;
        k.state = n.keys.empty() ? kKeyFree : kKeyDeclared;
        k.set = declared & ~f.set;
        stack_.push_back(k);  // f is not used after this
      }
      return true;
    case kObjColon:
      if (space(b)) return true;
      if (b != ':') return false;
      f.state = kObjValue;
      return true;
    case kObjValue:
      if (space(b)) return true;
      return value_start(f.count >= 0 ? n.values[f.count] : n.free_value, b);
    case kObjAfter:
      if (space(b)) return true;
      if (b == '}' && may_close) return value_done();
      if (b == ',' && more_keys) {
        f.state = kObjNext;
        return true;
      }
      return false;
  }
  return false;
}

// A key: one of the unused declared names, in its JSON spelling, or any string where keys are free.
bool JsonMatcher::step_key(Frame& k, uint8_t b) {
  bool closed = false;
  int index = -1;
  if (k.state == kKeyFree) {
    if (!string_byte(k, b, closed, -1)) return false;
  } else {
    const std::vector<std::string>& keys = k.node->keys;
    uint64_t alive = 0;
    for (uint64_t s = k.set; s; s &= s - 1) {
      const int i = __builtin_ctzll(s);
      if (static_cast<size_t>(k.pos) < keys[i].size() && static_cast<uint8_t>(keys[i][k.pos]) == b) alive |= uint64_t{1} << i;
    }
    if (alive) {  // a '"' inside a name is escaped, so continuing and closing never compete
      k.set = alive;
      ++k.pos;
      return true;
    }
    if (b != '"') return false;
    for (uint64_t s = k.set; s && index < 0; s &= s - 1)
      if (keys[__builtin_ctzll(s)].size() == static_cast<size_t>(k.pos)) index = __builtin_ctzll(s);
    if (index < 0) return false;
    closed = true;
  }
  if (!closed) return true;
  stack_.pop_back();
  Frame& o = stack_.back();
  o.count = index;
  if (index >= 0) o.set |= uint64_t{1} << index;
  o.state = kObjColon;
  return true;
}

bool JsonMatcher::step_array(Frame& f, uint8_t b) {
  const SchemaNode& n = *f.node;
  if (space(b)) return true;
  switch (f.state) {
    case kArrOpen:
      if (b == ']' && n.min_items == 0) return value_done();
      return (n.max_items != 0) && value_start(n.items, b);
    case kArrNext: return value_start(n.items, b);
    case kArrAfter:
      if (b == ']' && f.count >= n.min_items) return value_done();
      if (b == ',' && (n.max_items < 0 || f.count < n.max_items)) {
        f.state = kArrNext;
        return true;
      }
      return false;
  }
  return false;
}

bool JsonMatcher::step_string(Frame& f, uint8_t b) {
  bool closed = false;
  if (!string_byte(f, b, closed, f.node->max_length)) return false;
  if (!closed) return true;
  return f.count >= f.node->min_length && value_done();
}

// One byte of a string body. count: characters so far (an escape is one); the closing quote
// sets closed. max_length < 0: no bound.
bool JsonMatcher::string_byte(Frame& f, uint8_t b, bool& closed, int max_length) {
  if (f.utf8_left) {
    if (b < f.utf8_lo || b > f.utf8_hi) return false;
    --f.utf8_left;
    f.utf8_lo = 0x80;
    f.utf8_hi = 0xBF;
    return true;
  }
  // In a string, `digits` holds the escape state (high nibble) and the \u digits seen (low).
  const uint8_t esc = f.digits >> 4, hex = f.digits & 15;
  if (esc == kEscape) {
    if (b == 'u') {
      f.digits = kHex << 4;
      return true;
    }
    for (const char c : std::string_view("\"\\/bfnrt"))
      if (b == static_cast<uint8_t>(c)) {
        f.digits = 0;
        return true;
      }
    return false;
  }
  if (esc == kHex || esc == kHexSurrogate) {
    if (!is_hex(b)) return false;
    // \uD800 - \uDFFF are surrogates, valid only in pairs: none are written.
    if (hex == 0 && (b == 'd' || b == 'D')) {
      f.digits = (kHexSurrogate << 4) | 1;
      return true;
    }
    if (hex == 1 && esc == kHexSurrogate && !(b >= '0' && b <= '7')) return false;
    f.digits = hex + 1 == 4 ? 0 : static_cast<uint8_t>((esc << 4) | (hex + 1));
    return true;
  }
  if (b == '"') {
    closed = true;
    return true;
  }
  if (b < 0x20) return false;
  if ((b < 0x80 || b >= 0xC0) && max_length >= 0 && f.count >= max_length) return false;  // a character starts
  if (b == '\\') {
    f.digits = kEscape << 4;
    ++f.count;
    return true;
  }
  if (b < 0x80) {
    ++f.count;
    return true;
  }
  // UTF-8 lead bytes and the range of the byte after them (no overlongs, no surrogates).
  if (b >= 0xC2 && b <= 0xDF) f.utf8_left = 1;
  else if (b == 0xE0) f.utf8_left = 2, f.utf8_lo = 0xA0;
  else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) f.utf8_left = 2;
  else if (b == 0xED) f.utf8_left = 2, f.utf8_hi = 0x9F;
  else if (b == 0xF0) f.utf8_left = 3, f.utf8_lo = 0x90;
  else if (b >= 0xF1 && b <= 0xF3) f.utf8_left = 3;
  else if (b == 0xF4) f.utf8_left = 3, f.utf8_hi = 0x8F;
  else return false;
  ++f.count;
  return true;
}

bool JsonMatcher::step_number(Frame& f, uint8_t b, bool& ended) {
  const bool fraction = f.node->kind == Kind::number;
  const auto digit = [&](uint8_t next_state, int cap) {
    if (f.state != next_state) f.digits = 0;
    if (f.digits >= cap) return false;
    ++f.digits;
    f.state = next_state;
    return true;
  };
  const int cap = JsonSchema::kMaxDigits;
  switch (f.state) {
    case kNumMinus:
      if (b == '0') return f.state = kNumZero, true;
      return b > '0' && b <= '9' && digit(kNumInt, cap);
    case kNumInt:
      if (is_digit(b)) return digit(kNumInt, cap);
      [[fallthrough]];
    case kNumZero:
      if (fraction && b == '.') return f.state = kNumDot, true;
      if (fraction && (b == 'e' || b == 'E')) return f.state = kNumE, true;
      ended = true;
      return true;
    case kNumDot: return is_digit(b) && digit(kNumFrac, cap);
    case kNumFrac:
      if (is_digit(b)) return digit(kNumFrac, cap);
      if (b == 'e' || b == 'E') return f.state = kNumE, true;
      ended = true;
      return true;
    case kNumE:
      if (b == '+' || b == '-') return f.state = kNumESign, true;
      return is_digit(b) && digit(kNumExp, kExpDigits);
    case kNumESign: return is_digit(b) && digit(kNumExp, kExpDigits);
    case kNumExp:
      if (is_digit(b)) return digit(kNumExp, kExpDigits);
      ended = true;
      return true;
  }
  return false;
}

bool JsonMatcher::step_literals(Frame& f, uint8_t b, bool& ended) {
  const std::vector<std::string>& lits = f.node->literals;
  uint64_t alive = 0;
  bool whole = false;
  for (uint64_t s = f.set; s; s &= s - 1) {
    const std::string& l = lits[__builtin_ctzll(s)];
    if (static_cast<size_t>(f.pos) < l.size()) {
      if (static_cast<uint8_t>(l[f.pos]) == b) alive |= s & -s;
    } else {
      whole = true;
    }
  }
  if (alive) {  // a literal that can go on does (1 and 12: "12" continues)
    f.set = alive;
    ++f.pos;
    return true;
  }
  ended = whole;
  return whole;
}

bool JsonMatcher::in_free_string() const {
  const Frame& f = stack_.back();
  const bool string = f.state == kKeyFree || (f.state == kString && f.node->max_length < 0);
  return string && f.utf8_left == 0 && f.digits == 0 && !markers_.pending();
}

bool JsonMatcher::can_end() const {
  const Frame& top = stack_.back();
  if (stack_.size() == 1) return top.state == kRootAfter;
  if (stack_.size() != 2) return false;
  if (top.state == kNumZero || top.state == kNumInt || top.state == kNumFrac || top.state == kNumExp) return true;
  if (top.state != kLiteral) return false;
  for (uint64_t s = top.set; s; s &= s - 1)
    if (top.node->literals[__builtin_ctzll(s)].size() == static_cast<size_t>(top.pos)) return true;
  return false;
}

}  // namespace dsv4
