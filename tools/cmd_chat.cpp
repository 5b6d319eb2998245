// dsv4 chat: a conversation in the terminal. Line editing and a history on a terminal
// (line_editor.h); Ctrl-C stops the answer being written (or abandons the line being typed)
// and the conversation goes on; Ctrl-D or /exit ends it. Piped input is read line by line
// with no prompt, and a turn that fails then makes the exit status 1. With --session FILE the
// conversation (its messages, tokens and cache: runtime/snapshot_file.h) is saved there after
// every turn and resumed from there when the file exists.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/read_file.h"
#include "core/write_file.h"
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

// The --reasoning spelling of a mode (what parse_reasoning_mode reads back).
const char* reasoning_flag(ReasoningMode m) {
  switch (m) {
    case ReasoningMode::non_think: return "none";
    case ReasoningMode::think_low: return "low";
    case ReasoningMode::think_high: return "high";
    case ReasoningMode::think_max: return "max";
  }
  return "none";
}

// A conversation saved in a file: written through a temporary file renamed into place, so a
// crash mid-save leaves the previous one.
class SessionFile {
 public:
  SessionFile(std::string path, const Engine& e) : path_(std::move(path)), e_(e) {
    if (!path_.empty()) fingerprint_ = e.snapshot_fingerprint();
  }
  bool enabled() const { return !path_.empty(); }
  // Resumes conv from the file when it exists: its messages (and reasoning mode) replace these.
  bool load(Conversation& conv, nlohmann::ordered_json& messages, ReasoningMode& mode) const {
    if (!enabled() || !std::filesystem::exists(path_)) return false;
    Snapshot s = decode_snapshot(read_file(path_), fingerprint_, e_.model(), path_);
    nlohmann::ordered_json meta;
    try {
      meta = nlohmann::ordered_json::parse(s.meta);
    } catch (const nlohmann::json::exception& ex) {
      throw Error(path_ + ": its messages are not JSON (" + ex.what() + ")");
    }
    DSV4_CHECK(meta.is_object() && meta.contains("messages") && meta["messages"].is_array(), path_,
               ": no messages array in the saved conversation");
    messages = meta["messages"];
    if (meta.contains("reasoning") && meta["reasoning"].is_string())
      mode = parse_reasoning_mode(meta["reasoning"].get<std::string>());
    conv.resume(std::move(s));
    return true;
  }
  void save(const Conversation& conv, const nlohmann::ordered_json& messages, ReasoningMode mode) const {
    if (!enabled()) return;
    Snapshot s = conv.saved();
    s.meta = nlohmann::ordered_json{{"messages", messages}, {"reasoning", reasoning_flag(mode)}}.dump();
    const std::string tmp = path_ + ".tmp";
    write_file(tmp, encode_snapshot(s, fingerprint_));
    std::filesystem::rename(tmp, path_);
  }

 private:
  std::string path_;
  const Engine& e_;
  uint64_t fingerprint_ = 0;
};

int run_chat(const RunArgs& a, const std::string& history_file, const std::string& session_file) {
  ReasoningMode mode = parse_reasoning_mode(a.reasoning);
  check_mode(mode, a.ctx);
  DSV4_CHECK(session_file.empty() || !Comm::get().distributed(), "--session is not supported under mpirun yet");
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
  const SessionFile saved(session_file, *engine);
  if (saved.load(conv, messages, mode))
    std::cerr << "(resumed " << session_file << ": " << messages.size() << " messages, " << conv.tokens().size()
              << " tokens cached)\n";
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
      saved.save(conv, messages, mode);
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
      saved.save(conv, messages, mode);
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
  auto session = std::make_shared<std::string>();
  CLI::App* chat = app.add_subcommand("chat", "multi-turn conversation in the terminal");
  add_generation_options(chat, *a);
  chat->add_option("--history-file", *history, "where typed lines are kept between sessions (\"\" = nowhere)");
  chat->add_option("--session", *session,
                   "save the conversation (messages and cache) in FILE after every turn; resume it when FILE exists")
      ->type_name("FILE");
  out.push_back({chat, [a, history, session] { return run_chat(*a, *history, *session); }});
}

}  // namespace dsv4::tools
