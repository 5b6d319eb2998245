#include "tools/line_editor.h"

#include <histedit.h>
#include <langinfo.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <cstdio>
#include <cstring>
#include <cwchar>
#include <iostream>

#include "tools/interrupt.h"

namespace dsv4::tools {

namespace {

const std::string* current_prompt = nullptr;  // libedit asks for the prompt through a callback
char* prompt_of(EditLine*) { return const_cast<char*>(current_prompt ? current_prompt->c_str() : ""); }

// libedit's own reader retries a read that a signal interrupted, and a Ctrl-C that comes while
// it is not blocked in read() interrupts nothing: so it reads through this one, which waits in
// short polls and gives up (-1: el_gets returns no line) as soon as a Ctrl-C is pending.
// Returns 1 with a character, 0 at end of input.
int read_char(EditLine*, wchar_t* out) {
  mbstate_t state{};
  while (true) {
    if (Interrupts::pending()) return -1;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;  // a time-out, or EINTR: look at the flag again
    char c;
    const ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    wchar_t w;
    const size_t k = std::mbrtowc(&w, &c, 1, &state);
    if (k == static_cast<size_t>(-2)) continue;  // more bytes of the same character
    if (k == static_cast<size_t>(-1)) {          // not UTF-8: a replacement character
      state = {};
      w = L'\uFFFD';
    }
    *out = w;
    return 1;
  }
}

}  // namespace

LineEditor::LineEditor(std::string history_file) : history_file_(std::move(history_file)) {
  if (!isatty(0) || !isatty(1)) return;
  // libedit passes characters through the C library's multibyte conversion: UTF-8 needs a
  // UTF-8 LC_CTYPE (the user's, or else C.UTF-8).
  std::setlocale(LC_CTYPE, "");
  if (std::strcmp(nl_langinfo(CODESET), "UTF-8") != 0) std::setlocale(LC_CTYPE, "C.UTF-8");
  el_ = el_init("dsv4", stdin, stdout, stderr);
  if (!el_) return;  // no terminal after all: plain lines
  hist_ = history_init();
  HistEvent ev;
  history(hist_, &ev, H_SETSIZE, 1000);
  history(hist_, &ev, H_SETUNIQUE, 1);
  if (!history_file_.empty()) history(hist_, &ev, H_LOAD, history_file_.c_str());  // absent at first
  el_set(el_, EL_EDITOR, "emacs");
  el_set(el_, EL_HIST, history, hist_);
  el_set(el_, EL_PROMPT, prompt_of);
  el_set(el_, EL_SIGNAL, 0);  // our SIGINT handler sees Ctrl-C (see interrupt.h)
  el_set(el_, EL_GETCFN, read_char);
  el_source(el_, nullptr);    // ~/.editrc, as other libedit programs
}

LineEditor::~LineEditor() {
  if (hist_) {
    HistEvent ev;
    if (!history_file_.empty()) history(hist_, &ev, H_SAVE, history_file_.c_str());
    history_end(hist_);
  }
  if (el_) el_end(el_);
}

std::optional<LineEditor::Line> LineEditor::read(const std::string& prompt) {
  if (!el_) {
    std::string text;
    if (!std::getline(std::cin, text)) return std::nullopt;
    return Line{text, false};
  }
  current_prompt = &prompt;
  int count = 0;
  const char* s = el_gets(el_, &count);
  current_prompt = nullptr;
  if (Interrupts::take()) {  // Ctrl-C while typing: abandon the line
    std::fputs("^C\n", stdout);
    std::fflush(stdout);
    return Line{"", true};
  }
  if (!s || count <= 0) return std::nullopt;  // Ctrl-D
  std::string text(s, count);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (!text.empty()) {
    HistEvent ev;
    history(hist_, &ev, H_ENTER, text.c_str());
  }
  return Line{text, false};
}

}  // namespace dsv4::tools
