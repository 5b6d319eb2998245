// Ctrl-C as a request rather than an ending: while an Interrupts object lives, SIGINT only sets
// a flag (and interrupts a blocking read), which `dsv4 chat` polls to stop the answer being
// generated, or to abandon the line being typed, and then goes on with the conversation.
#pragma once

#include <csignal>

namespace dsv4::tools {

class Interrupts {
 public:
  Interrupts();   // installs the SIGINT handler
  ~Interrupts();  // restores the previous one
  Interrupts(const Interrupts&) = delete;
  Interrupts& operator=(const Interrupts&) = delete;

  static bool pending();  // a Ctrl-C not yet taken
  static bool take();     // pending(), and clears it

 private:
  struct sigaction previous_{};
};

}  // namespace dsv4::tools
