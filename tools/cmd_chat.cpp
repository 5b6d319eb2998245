// dsv4 chat: a conversation in the terminal. Line editing and a history on a terminal
// (line_editor.h); Ctrl-C stops the answer being written (or abandons the line being typed)
// and the conversation goes on; Ctrl-D or /exit ends it. Piped input is read line by line
// with no prompt, and a turn that fails then makes the exit status 1.
#include <cstdlib>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "dist/comm.h"
#include "tools/commands.h"
#include "tools/generation.h"
#include "tools/interrupt.h"
#include "tools/line_editor.h"

namespace dsv4::tools {

namespace {

constexpr const char* kCommands = "/clear /think /nothink /max /exit";

std::string default_history_file() {
  const char* home = std::getenv("HOME");
  return home && *home ? std::string(home) + "/.dsv4_history" : "";
}

int run_chat(const RunArgs& a, const std::string& history_file) {
  ReasoningMode mode = parse_reasoning_mode(a.reasoning);
  check_mode(mode, a.ctx);
  const auto engine = load_engine(a);
  // Under mpirun rank 0 reads the terminal and leads; the other ranks run its forward passes.
  if (Comm::get().rank() > 0) {
    engine->follow();
    return 0;
  }
  engine->lead();
  struct StopFollowers {
    const Engine& e;
    ~StopFollowers() { e.stop_followers(); }
  } stop{*engine};
  Conversation conv(*engine);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  const nlohmann::ordered_json initial = messages;
  LineEditor editor(history_file);
  Interrupts interrupts;
  std::cerr << "dsv4 chat, " << model_banner(*engine) << "\n(" << reasoning_mode_name(mode) << "; " << kCommands
            << "; Ctrl-C stops an answer, Ctrl-D leaves)\n";
  int failures = 0;
  while (true) {
    const auto line = editor.read("> ");
    if (!line || line->text == "/exit" || line->text == "/quit") break;
    if (line->interrupted || line->text.empty()) continue;
    const std::string& text = line->text;
    if (text == "/clear") {
      messages = initial;
      conv.reset();
      std::cerr << "(conversation cleared)\n";
      continue;
    }
    if (text == "/think" || text == "/nothink" || text == "/max") {
      mode = text == "/think" ? ReasoningMode::think_high : text == "/max" ? ReasoningMode::think_max : ReasoningMode::non_think;
      check_mode(mode, a.ctx);
      std::cerr << "(" << reasoning_mode_name(mode) << ")\n";
      continue;
    }
    if (text[0] == '/') {
      std::cerr << "unknown command " << text << " (commands: " << kCommands << ")\n";
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", text}});
    try {
      Answer r = answer(conv, chat_prompt_tokens(*engine, messages, nullptr, mode), mode, a);
      r.message.erase("tool_calls");  // keep the history to what the model said in text
      const bool said_nothing = r.message.value("content", "").empty() && r.message.value("reasoning_content", "").empty();
      if (r.interrupted) std::cerr << "(interrupted; the conversation goes on" << (said_nothing ? " without this turn" : "") << ")\n";
      // An interrupted answer stays in the history as far as it was shown; one stopped before
      // its first word leaves no turn behind.
      if (r.interrupted && said_nothing) messages.erase(messages.size() - 1);
      else messages.push_back(r.message);
    } catch (const Error& e) {
      messages.erase(messages.size() - 1);
      std::cerr << "error: " << e.what() << "\n";
      ++failures;
    }
  }
  if (editor.interactive()) std::cout << "\n";
  return failures > 0 && !editor.interactive() ? 1 : 0;
}

}  // namespace

void add_chat(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<RunArgs>();
  auto history = std::make_shared<std::string>(default_history_file());
  CLI::App* chat = app.add_subcommand("chat", "multi-turn conversation in the terminal");
  add_generation_options(chat, *a);
  chat->add_option("--history-file", *history, "where typed lines are kept between sessions (\"\" = nowhere)");
  out.push_back({chat, [a, history] { return run_chat(*a, *history); }});
}

}  // namespace dsv4::tools
