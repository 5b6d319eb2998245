// dsv4 run and dsv4 chat: answers in the terminal. Reasoning streams dimmed (on a terminal)
// before the answer; tool calls are printed as JSON; tokens per second go to stderr at the end.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "chat/stream.h"
#include "core/check.h"
#include "dist/comm.h"
#include "core/thread_pool.h"
#include "runtime/chat_prompt.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct RunArgs {
  std::string model_dir, prompt, input_file, system;
  std::string reasoning = "none";
  int max_tokens = 256, threads = 0, top_k = 0;
  float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
  uint64_t seed = 0;
  long long ctx = 65536;
};

std::unique_ptr<Engine> load(const RunArgs& a) {
  set_num_threads(a.threads);
  ProgressBar bar("loading");
  auto e = std::make_unique<Engine>(a.model_dir, [&](const std::string& what) { bar.update(0.5, what); });
  bar.done(a.model_dir);
  return e;
}

void check_mode(ReasoningMode m, long long ctx) {
  if (m == ReasoningMode::think_max && ctx < kThinkMaxMinContext)
    std::cerr << "warning: think max is meant for a context of at least " << kThinkMaxMinContext
              << " tokens (the model card's advice); --ctx is " << ctx << "\n";
}

// One assistant turn: generate, stream reasoning / content / tool calls, return the message.
nlohmann::ordered_json answer(Conversation& conv, const std::vector<int>& prompt, ReasoningMode mode,
                              const RunArgs& a) {
  DSV4_CHECK(static_cast<long long>(prompt.size()) + a.max_tokens <= a.ctx, "the prompt (", prompt.size(),
             " tokens) plus --max-tokens ", a.max_tokens, " exceeds --ctx ", a.ctx);
  const bool tty = isatty(1);
  chat::StreamParser parser(thinking_mode_of(mode));
  bool in_reasoning = false;
  auto show = [&](const chat::StreamDelta& d) {
    if (!d.reasoning_content.empty()) {
      if (!in_reasoning && tty) std::cout << "\x1b[2m";
      in_reasoning = true;
      std::cout << d.reasoning_content;
    }
    if (!d.content.empty() || !d.tool_calls.empty()) {
      if (in_reasoning) std::cout << (tty ? "\x1b[0m\n" : "\n");
      in_reasoning = false;
      std::cout << d.content;
      for (const auto& t : d.tool_calls) {
        if (t.begin) std::cout << "\n[tool call " << t.index << "] " << t.name << " ";
        std::cout << t.arguments;
      }
    }
    std::cout << std::flush;
  };
  GenerateRequest req;
  req.prompt = prompt;
  req.sampling = {a.temperature, a.top_p, a.top_k, a.min_p, a.seed};
  req.max_tokens = a.max_tokens;
  req.on_text = [&](const std::string& delta) {
    show(parser.feed(delta));
    return true;
  };
  std::unique_ptr<ProgressBar> bar;
  if (prompt.size() > 512) bar = std::make_unique<ProgressBar>("prefill");
  req.on_prefill = [&](size_t done, size_t total) {
    if (bar) bar->update(static_cast<double>(done) / total, std::to_string(done) + "/" + std::to_string(total));
  };
  const GenerateResult r = generate(conv, req);
  if (r.hit_eos) show(parser.feed(chat::eos_token));
  show(parser.finish());
  if (in_reasoning && tty) std::cout << "\x1b[0m";
  std::cout << "\n";
  const size_t n = r.tokens.size();
  std::cerr << "[" << r.prompt_tokens << " prompt tokens (" << r.reused_tokens << " cached), "
            << (r.prompt_tokens - r.reused_tokens) / std::max(1e-9, r.prefill_seconds) << " tok/s prefill; " << n
            << " generated, " << n / std::max(1e-9, r.decode_seconds) << " tok/s; finish: "
            << finish_reason_name(r.finish) << "]\n";
  nlohmann::ordered_json msg = parser.message().to_json();
  return msg;
}

nlohmann::ordered_json user_turn(const std::string& system, const std::string& text) {
  nlohmann::ordered_json m = nlohmann::ordered_json::array();
  if (!system.empty()) m.push_back({{"role", "system"}, {"content", system}});
  m.push_back({{"role", "user"}, {"content", text}});
  return m;
}

int run_once(const RunArgs& a) {
  DSV4_CHECK(a.prompt.empty() != a.input_file.empty(), "give exactly one of -p TEXT or --input-file FILE");
  const ReasoningMode mode = parse_reasoning_mode(a.reasoning);
  check_mode(mode, a.ctx);
  std::vector<std::string> prompts;
  if (!a.prompt.empty()) {
    prompts.push_back(a.prompt);
  } else {
    std::ifstream in(a.input_file);
    DSV4_CHECK(in.good(), a.input_file, ": cannot open");
    std::string line, cur;
    while (std::getline(in, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        if (!cur.empty()) prompts.push_back(cur);
        cur.clear();
      } else {
        cur += (cur.empty() ? "" : "\n") + line;
      }
    }
    if (!cur.empty()) prompts.push_back(cur);
    DSV4_CHECK(!prompts.empty(), a.input_file, ": no prompts (prompts are separated by blank lines)");
  }
  const auto engine = load(a);
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts.size() > 1) std::cout << "### prompt " << i + 1 << ": " << prompts[i] << "\n";
    Conversation conv(*engine);
    answer(conv, chat_prompt_tokens(*engine, user_turn(a.system, prompts[i]), nullptr, mode), mode, a);
  }
  return 0;
}

int run_chat(const RunArgs& a) {
  ReasoningMode mode = parse_reasoning_mode(a.reasoning);
  check_mode(mode, a.ctx);
  const auto engine = load(a);
  // Under mpirun rank 0 reads the terminal and leads; the other ranks run its forward passes.
  if (Comm::get().rank() > 0) {
    engine->model().follow();
    return 0;
  }
  engine->model().lead();
  struct StopFollowers {
    const Model& m;
    ~StopFollowers() { m.stop_followers(); }
  } stop{engine->model()};
  Conversation conv(*engine);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  const nlohmann::ordered_json initial = messages;
  std::cerr << "dsv4 chat (" << reasoning_mode_name(mode)
            << "). Commands: /clear /think /nothink /max /exit. Random-weight models answer noise.\n";
  std::string line;
  while (true) {
    std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line) || line == "/exit" || line == "/quit") break;
    if (line.empty()) continue;
    if (line == "/clear") {
      messages = initial;
      conv.reset();
      std::cerr << "(conversation cleared)\n";
      continue;
    }
    if (line == "/think" || line == "/nothink" || line == "/max") {
      mode = line == "/think" ? ReasoningMode::think_high : line == "/max" ? ReasoningMode::think_max : ReasoningMode::non_think;
      check_mode(mode, a.ctx);
      std::cerr << "(" << reasoning_mode_name(mode) << ")\n";
      continue;
    }
    if (line[0] == '/') {
      std::cerr << "unknown command " << line << " (commands: /clear /think /nothink /max /exit)\n";
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    try {
      nlohmann::ordered_json reply = answer(conv, chat_prompt_tokens(*engine, messages, nullptr, mode), mode, a);
      reply.erase("tool_calls");  // keep the history to what the model said in text
      messages.push_back(reply);
    } catch (const Error& e) {
      messages.erase(messages.size() - 1);
      std::cerr << "error: " << e.what() << "\n";
    }
  }
  return 0;
}

void add_options(CLI::App* sub, RunArgs& a) {
  sub->add_option("-m,--model", a.model_dir, "checkpoint directory (with tokenizer.json)")->required();
  sub->add_option("--system", a.system, "system prompt");
  sub->add_option("--reasoning", a.reasoning, "none (non-think), high (think) or max (think max)");
  sub->add_option("-n,--max-tokens", a.max_tokens, "most tokens to generate per answer");
  sub->add_option("--temperature", a.temperature, "0 = greedy (default 1.0, the official default)");
  sub->add_option("--top-p", a.top_p, "nucleus sampling (default 1.0)");
  sub->add_option("--top-k", a.top_k, "0 = off");
  sub->add_option("--min-p", a.min_p, "0 = off");
  sub->add_option("--seed", a.seed, "random seed (same seed, same text)");
  sub->add_option("--ctx", a.ctx, "context length limit in tokens");
  sub->add_option("--threads", a.threads, "worker threads (0 = all cores)");
}

}  // namespace

void add_run(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "answer one prompt (or each prompt of a file), streaming");
  add_options(run, *a);
  run->add_option("-p,--prompt", a->prompt, "the prompt");
  run->add_option("--input-file", a->input_file, "prompts separated by blank lines");
  out.push_back({run, [a] { return run_once(*a); }});

  auto c = std::make_shared<RunArgs>();
  CLI::App* chat = app.add_subcommand("chat", "multi-turn conversation in the terminal");
  add_options(chat, *c);
  out.push_back({chat, [c] { return run_chat(*c); }});
}

}  // namespace dsv4::tools
