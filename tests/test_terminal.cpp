// `dsv4 chat` on a real terminal (a pseudo-terminal from forkpty), typed at as a person would:
// Ctrl-C while typing abandons the line; Ctrl-C during an answer stops it (here in the prefill
// of a long system prompt) and the conversation goes on, the interrupted turn left out and the
// cache kept; the up arrow recalls the last line (libedit); Ctrl-D leaves with status 0 and
// the history file keeps the lines sent. And `dsv4 run` on a terminal: reasoning dimmed unless
// NO_COLOR is set; a progress bar redrawn in place that erases what it leaves behind.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "test_util.h"

namespace dsv4 {
namespace {

using Clock = std::chrono::steady_clock;

// A program on the slave side of a pseudo-terminal; what it writes accumulates in screen().
class Terminal {
 public:
  explicit Terminal(std::vector<std::string> argv, std::vector<std::pair<std::string, std::string>> env = {}) {
    winsize ws{};
    ws.ws_row = 40;
    ws.ws_col = 120;
    pid_ = forkpty(&master_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      setenv("TERM", "xterm", 1);
      unsetenv("NO_COLOR");
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Terminal() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) close(master_);
  }
  bool started() const { return pid_ > 0; }
  void type(const std::string& keys) { ASSERT_EQ(write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size())); }
  // Reads until the screen has gained `needle` after position `from` (or the time is up).
  bool wait_for(const std::string& needle, size_t from, double seconds = 30) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (screen_.find(needle, from) == std::string::npos) {
      if (Clock::now() > end || !pump(50)) return false;
    }
    return true;
  }
  // Waits for "> " after `from` and for the line editor to have the terminal (canonical mode
  // off): keys typed before that would be echoed and buffered by the kernel instead.
  bool wait_for_prompt(size_t from, double seconds = 30) {
    if (!wait_for("> ", from, seconds)) return false;
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    termios t{};
    while (tcgetattr(master_, &t) == 0 && (t.c_lflag & ICANON)) {
      if (Clock::now() > end || !pump(10)) return false;
    }
    return true;
  }
  // Waits for the program's exit; its status, or -1 on a time-out.
  int wait_exit(double seconds) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
      pump(50);
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
    }
    return -1;
  }
  const std::string& screen() const { return screen_; }
  size_t count(const std::string& s) const {
    size_t n = 0;
    for (size_t at = screen_.find(s); at != std::string::npos; at = screen_.find(s, at + 1)) ++n;
    return n;
  }

 private:
  bool pump(int ms) {  // false once the program has closed the terminal
    pollfd p{master_, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return true;
    char buf[4096];
    const ssize_t n = read(master_, buf, sizeof buf);
    if (n <= 0) return false;
    screen_.append(buf, n);
    return true;
  }
  int master_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string screen_;
};

TEST(Terminal, ChatCtrlCStopsTheAnswerAndKeepsTheConversation) {
  test::TempDir dir;
  const std::string model = dir.file("m"), history = dir.file("history");
  const auto synth = test::run_command(test::dsv4_binary() + " synth --preset tiny --seed 5 -o " + model);
  ASSERT_EQ(synth.status, 0) << synth.output;
  // A system prompt of ~13,000 tokens: a prefill long enough (tens of 256-token chunks) to be
  // interrupted after its first progress report, whatever this machine's speed.
  std::string system;
  for (int i = 0; i < 500; ++i) system += "lorem ipsum dolor sit amet ";
  Terminal t({test::dsv4_binary(), "chat", "-m", model, "--system", system, "-c", "64k", "-n", "8", "--seed", "1",
              "--history-file", history});
  ASSERT_TRUE(t.started());
  ASSERT_TRUE(t.wait_for_prompt(0)) << t.screen();

  // Ctrl-C while typing: the line is dropped and a new prompt comes; nothing was generated.
  size_t mark = t.screen().size();
  t.type("never sent");
  ASSERT_TRUE(t.wait_for("never sent", mark)) << t.screen();
  t.type("\x03");
  ASSERT_TRUE(t.wait_for("^C", mark)) << t.screen();
  ASSERT_TRUE(t.wait_for_prompt(t.screen().find("^C", mark))) << t.screen();
  EXPECT_EQ(t.count("prompt tokens"), 0u) << t.screen();

  // Ctrl-C during the answer: at the first progress report of the prefill.
  mark = t.screen().size();
  t.type("hello\r");
  ASSERT_TRUE(t.wait_for("prefill [", mark)) << t.screen();
  t.type("\x03");
  ASSERT_TRUE(t.wait_for("(interrupted; the conversation goes on without this turn)", mark, 10)) << t.screen();
  EXPECT_NE(t.screen().find("finish: interrupted]", mark), std::string::npos) << t.screen();
  ASSERT_TRUE(t.wait_for_prompt(t.screen().find("(interrupted", mark))) << t.screen();

  // The conversation goes on: the next turn is answered, reusing the part of the system prompt
  // that the interrupted prefill had cached.
  mark = t.screen().size();
  t.type("again\r");
  ASSERT_TRUE(t.wait_for("finish: ", mark, 120)) << t.screen();
  const std::string turn = t.screen().substr(mark);
  EXPECT_EQ(turn.find(" (0 cached)"), std::string::npos) << turn;
  EXPECT_EQ(turn.find("interrupted"), std::string::npos) << turn;

  // Line editing: the up arrow brings "again" back.
  ASSERT_TRUE(t.wait_for_prompt(mark + turn.find("finish: "), 10)) << t.screen();
  mark = t.screen().size();
  t.type("\x1b[A");
  ASSERT_TRUE(t.wait_for("again", mark)) << t.screen();
  t.type("\r");
  ASSERT_TRUE(t.wait_for("finish: ", mark, 120)) << t.screen();

  // Ctrl-D at the prompt leaves; the history file has the lines sent, not the abandoned one.
  ASSERT_TRUE(t.wait_for_prompt(t.screen().rfind("finish: "), 10)) << t.screen();
  t.type("\x04");
  EXPECT_EQ(t.wait_exit(10), 0) << t.screen();
  const std::string kept = test::read_file(history);
  EXPECT_NE(kept.find("hello"), std::string::npos) << kept;
  EXPECT_NE(kept.find("again"), std::string::npos) << kept;
  EXPECT_EQ(kept.find("never sent"), std::string::npos) << kept;
}

TEST(Terminal, RunColoursReasoningUnlessNoColor) {
  const std::vector<std::string> run = {test::dsv4_binary(), "run", "-m", std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny",
                                        "-p", "Hello!", "--reasoning", "high", "--temp", "0"};
  Terminal coloured(run);
  ASSERT_TRUE(coloured.started());
  EXPECT_EQ(coloured.wait_exit(30), 0) << coloured.screen();
  EXPECT_NE(coloured.screen().find("\x1b[2mThe user is greeting me"), std::string::npos) << coloured.screen();
  // The loading bar: every redraw returns to the line's start and erases to its end.
  const std::string& screen = coloured.screen();
  EXPECT_NE(screen.find("\rloading ["), std::string::npos) << screen;
  for (size_t at = screen.find("\rloading ["); at != std::string::npos; at = screen.find("\rloading [", at + 1)) {
    const size_t end = screen.find_first_of("\r\n", at + 1);
    ASSERT_NE(end, std::string::npos);
    EXPECT_EQ(screen.compare(end - 3, 3, "\x1b[K"), 0) << screen.substr(at, end - at);
  }
  Terminal plain(run, {{"NO_COLOR", "1"}});
  ASSERT_TRUE(plain.started());
  EXPECT_EQ(plain.wait_exit(30), 0) << plain.screen();
  EXPECT_NE(plain.screen().find("The user is greeting me"), std::string::npos) << plain.screen();
  EXPECT_EQ(plain.screen().find("\x1b[2m"), std::string::npos) << plain.screen();
}

}  // namespace
}  // namespace dsv4
