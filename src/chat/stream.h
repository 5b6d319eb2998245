// Streaming completion parser: fed the model's output in pieces of any size (a token's text,
// a byte, a split inside "</think>" or "<｜DSML｜...>"), it hands back what became certain in
// each piece: reasoning text, content text, and tool calls (the name when the call starts, then
// the arguments JSON text in fragments). Markup never reaches reasoning or content: text that
// could be the start of a tag is held until it is known not to be one, and so is an incomplete
// UTF-8 character. On a complete text the official parser accepts, the sum of the deltas and
// message() equal parse_completion's result.
//
// Unlike the one-shot parser it is lenient where a server must keep going: a tool-call block
// before "</think>" ends the reasoning, stray "<think>", "</think>" and BOS tokens are cut out,
// the end-of-sentence token inside reasoning ends the message. Text cut short is not an error:
// finish() closes what is open (a string value gets its quote, a call its "}") and sets
// truncated(). Text that breaks the DSML format sets error() and the rest is ignored; the parser
// never throws on model output.
//
// With whole_calls (what a server wants: never a half call, never lost text), a tool-call
// block's calls are handed out only once the block is closed, all of them in one delta; a
// block that breaks (malformed DSML, the end-of-sentence token inside it, the text ending in
// it) gives no call at all and its raw characters, from the tag that opened it, become content
// (error() says why). Other markup that breaks the format is kept as content too, and so is
// everything after it up to the end-of-sentence token.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chat/parse.h"

namespace dsv4::chat {

struct ToolCallDelta {
  size_t index = 0;       // which call of the message, from 0
  bool begin = false;     // the call's first delta; name is set
  std::string name;
  std::string arguments;  // the next piece of the arguments text
};

struct StreamDelta {
  std::string reasoning_content, content;
  std::vector<ToolCallDelta> tool_calls;  // in order; one entry per call touched
  bool empty() const { return reasoning_content.empty() && content.empty() && tool_calls.empty(); }
};

class StreamParser {
 public:
  explicit StreamParser(ThinkingMode mode, bool whole_calls = false);

  // The next piece of completion text.
  StreamDelta feed(std::string_view piece);
  // No more text: flushes what was held back and closes what is open. Call once.
  StreamDelta finish();

  const ParsedMessage& message() const { return message_; }  // everything emitted so far
  bool done() const { return state_ == State::done; }         // the end-of-sentence token was seen
  bool truncated() const { return truncated_; }               // finish() came before it
  const std::string& error() const { return error_; }          // non-empty: the format broke there

 private:
  enum class State {
    reasoning,     // thinking mode, before "</think>"
    content,       // the answer
    calls_between, // in a tool-call block, expecting ">\n" then an invoke or the block's end
    call_name,     // after "<｜DSML｜invoke", up to the first parameter or the invoke's end
    param_header,  // after "<｜DSML｜parameter": ' name="..." string="true|false">'
    param_value,   // the value, up to "</｜DSML｜parameter"
    param_close,   // ">\n" then the next parameter or the invoke's end
    after_calls,   // after "</｜DSML｜tool_calls>": the end-of-sentence token or nothing
    done,
    failed,
    raw,           // whole_calls, after the format broke: content up to the end-of-sentence token
  };
  bool in_block() const { return state_ >= State::calls_between && state_ <= State::param_close; }

  bool step();       // consumes what the state can; false when it needs more text
  bool step_text();  // reasoning and content
  size_t step_fixed(std::span<const std::string_view> stops, std::string_view expected, const char* complaint);
  void fail(const std::string& why);
  void emit_text(std::string_view s);
  void begin_call(std::string name);
  void emit_arguments(std::string_view s);
  void emit_value(std::string_view s);  // a parameter value: escaped inside a JSON string, or as is
  bool close_call();  // false when whole_calls found the call broken (then State::raw)
  void break_block();  // whole_calls: the open block's calls dropped, its text made content
  // whole_calls: the end-of-sentence token in the open block's text from `from` on (before its
  // closing tag) ends the message there; the block breaks. Whether it did.
  bool break_at_eos(size_t from);
  bool step_raw();

  State state_;
  std::string buf_;   // received, not yet consumed by the state
  std::string tail_;  // the last bytes written to reasoning or content, see step_text
  size_t fed_ = 0;    // bytes of completion received, for error messages
  ParsedMessage message_;
  StreamDelta delta_;  // being built by the current feed/finish
  std::vector<std::string> param_names_;  // of the open call, to refuse duplicates
  bool value_is_string_ = false;          // the open value is string="true"
  bool value_open_ = false;               // its JSON string quote is open
  bool call_open_ = false;                // the last call's "}" is not written yet
  bool finished_ = false;
  bool truncated_ = false;
  std::string error_;
  // whole_calls: the open block's raw text (from its opening tag), the index of its first call,
  // its call deltas held back until it closes, and how much of the raw text was searched for
  // the end-of-sentence token.
  bool whole_calls_ = false;
  std::string block_raw_;
  size_t block_first_call_ = 0;
  std::vector<ToolCallDelta> held_;
  size_t eos_searched_ = 0;
};

}  // namespace dsv4::chat
