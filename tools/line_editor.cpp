#include "tools/line_editor.h"

#include <histedit.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "tools/interrupt.h"

namespace dsv4::tools {

namespace {

const std::string* current_prompt = nullptr;  // libedit asks for the prompt through a callback
char* prompt_of(EditLine*) { return const_cast<char*>(current_prompt ? current_prompt->c_str() : ""); }

}  // namespace

LineEditor::LineEditor(std::string history_file) : history_file_(std::move(history_file)) {
  if (!isatty(0) || !isatty(1)) return;
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
