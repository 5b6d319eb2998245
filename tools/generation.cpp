#include "tools/generation.h"

#include <filesystem>
#include <iostream>

#include "chat/stream.h"
#include "core/check.h"
#include "core/thread_pool.h"
#include "ckpt/info.h"
#include "tools/interrupt.h"
#include "tools/options.h"
#include "tools/progress.h"
#include "tools/terminal.h"

namespace dsv4::tools {

ReasoningOutput parse_reasoning_output(const std::string& s) {
  if (s == "inline") return ReasoningOutput::inline_;
  if (s == "separate") return ReasoningOutput::separate;
  if (s == "hidden") return ReasoningOutput::hidden;
  throw Error("--reasoning-output '" + s + "' is not one of inline, separate, hidden");
}

void add_generation_options(CLI::App* sub, RunArgs& a) {
  sub->add_option("-m,--model", a.model_dir, "checkpoint directory (with tokenizer.json)")->required();
  add_weights_option(sub, a.weights);
  add_chat_format_option(sub, a.chat_format);
  sub->add_option("--system", a.system, "system prompt");
  sub->add_option("--reasoning", a.reasoning, "none (non-think), high (think) or max (think max)");
  sub->add_option("--reasoning-output", a.reasoning_output,
                  "inline (before the answer: dimmed on a terminal, else between <think> lines), "
                  "separate (to stderr) or hidden");
  sub->add_option("-n,--max-tokens,--n-predict", a.max_tokens, "most tokens to generate per answer");
  sub->add_option("--temperature,--temp", a.temperature, "0 = greedy; the default is the official one");
  add_spec_options(sub, a.spec, a.draft, "");
  sub->add_option("--top-p", a.top_p, "nucleus sampling");
  sub->add_option("--top-k", a.top_k, "0 = off");
  sub->add_option("--min-p", a.min_p, "0 = off");
  sub->add_option("-s,--seed", a.seed, "random seed (same seed, same text)");
  add_ctx_option(sub, a.ctx, "context length limit");
  add_threads_option(sub, a.threads);
  add_cache_options(sub, a.cache);
}

std::unique_ptr<Engine> load_engine(const RunArgs& a) {
  parse_reasoning_output(a.reasoning_output);  // a bad flag fails before the load
  check_cache_args(a.cache);
  set_num_threads(a.threads);
  ProgressBar bar("loading");
  auto e = std::make_unique<Engine>(a.model_dir, [&](const std::string& what) { bar.update(0.5, what); },
                                    ModelOptions{.weights = a.weights});
  bar.done(a.model_dir);
  if (a.chat_format != "auto") e->set_chat_format(chat::parse_chat_format(a.chat_format));
  enable_prefix_cache(*e, a.cache);
  return e;
}

std::string model_banner(const Engine& e) {
  std::string s = e.name() + ": " + model_summary(e.model().config());
  const auto& files = e.model().checkpoint().files();
  if (!files.empty()) {
    const auto& meta = files.front()->metadata();
    if (const auto it = meta.find("dsv4_origin"); it != meta.end()) {
      s += "; " + it->second;
      if (it->second.starts_with("random weights")) s += ": it answers noise";
    }
  }
  const std::filesystem::path card = std::filesystem::path(e.model().checkpoint().dir()) / "MODEL_CARD.md";
  if (std::filesystem::exists(card)) s += "; model card: " + card.string();
  return s;
}

void check_mode(ReasoningMode m, long long ctx) {
  if (m == ReasoningMode::think_max && ctx < kThinkMaxMinContext)
    std::cerr << "warning: think max is meant for a context of at least " << kThinkMaxMinContext
              << " tokens (the model card's advice); --ctx is " << ctx << "\n";
}

namespace {

// Writes parser deltas in the layout of --reasoning-output.
class Printer {
 public:
  explicit Printer(ReasoningOutput where)
      : where_(where),
        reasoning_(where == ReasoningOutput::separate ? std::cerr : std::cout),
        dim_(color_enabled(where == ReasoningOutput::separate ? 2 : 1)) {}

  void show(const chat::StreamDelta& d) {
    if (!d.reasoning_content.empty() && where_ != ReasoningOutput::hidden) {
      if (!in_reasoning_) open_reasoning();
      reasoning_ << d.reasoning_content << std::flush;
    }
    if (!d.content.empty() || !d.tool_calls.empty()) {
      close_reasoning();
      std::cout << d.content;
      for (const auto& t : d.tool_calls) {
        if (t.begin) std::cout << "\n[tool call " << t.index << "] " << t.name << " ";
        std::cout << t.arguments;
      }
      std::cout << std::flush;
    }
  }

  void end() {  // the last line ended once, whichever stream it is on
    const bool ends_in_reasoning = in_reasoning_;
    close_reasoning();
    if (!ends_in_reasoning || where_ == ReasoningOutput::separate) std::cout << "\n";
    std::cout << std::flush;
  }

 private:
  void open_reasoning() {
    in_reasoning_ = true;
    if (dim_) reasoning_ << "\x1b[2m";
    else if (where_ == ReasoningOutput::inline_) reasoning_ << "<think>\n";
  }
  void close_reasoning() {
    if (!in_reasoning_) return;
    in_reasoning_ = false;
    if (dim_) reasoning_ << "\x1b[0m\n";
    else reasoning_ << (where_ == ReasoningOutput::inline_ ? "\n</think>\n" : "\n");
    reasoning_ << std::flush;
  }

  ReasoningOutput where_;
  std::ostream& reasoning_;
  bool dim_, in_reasoning_ = false;
};

}  // namespace

Answer answer(Conversation& conv, const std::vector<int>& prompt, ReasoningMode mode, const RunArgs& a) {
  DSV4_CHECK(static_cast<long long>(prompt.size()) + a.max_tokens <= a.ctx, "the prompt (", prompt.size(),
             " tokens) plus --max-tokens ", a.max_tokens, " exceeds --ctx ", a.ctx);
  // Whole calls, as the server: a broken tool-call block is shown as the text it was, never
  // as half a call or lost.
  chat::StreamParser parser(thinking_mode_of(mode), /*whole_calls=*/true);
  Printer printer(parse_reasoning_output(a.reasoning_output));
  GenerateRequest req;
  req.prompt = prompt;
  req.sampling = {a.temperature, a.top_p, a.top_k, a.min_p, a.seed};
  req.max_tokens = a.max_tokens;
  const SpecChoice spec = chosen_spec(conv.engine().model().config(), a.spec, a.draft);
  req.spec = spec.mode;
  req.draft = spec.draft;
  req.on_text = [&](const std::string& delta) {
    printer.show(parser.feed(delta));
    return true;
  };
  std::unique_ptr<ProgressBar> bar;
  if (prompt.size() > 512) bar = std::make_unique<ProgressBar>("prefill");
  req.on_prefill = [&](size_t done, size_t total) {
    if (!bar) return;
    if (done < total) bar->update(static_cast<double>(done) / total, std::to_string(done) + "/" + std::to_string(total));
    else bar->done(std::to_string(total) + " tokens");
  };
  const SpecMode req_spec = req.spec;
  const int req_draft = req.draft;
  Generation g(conv, std::move(req));
  while (!g.step())
    if (Interrupts::take()) g.cancel();
  const GenerateResult& r = g.result();
  if (r.hit_eos) printer.show(parser.feed(chat::eos_token));
  printer.show(parser.finish());
  printer.end();
  if (!parser.error().empty()) std::cerr << "[model output shown as text: " << parser.error() << "]\n";
  const size_t n = r.tokens.size();
  std::cerr << "[" << r.prompt_tokens << " prompt tokens (" << r.reused_tokens << " cached), ";
  if (r.prefill_seconds > 0 || n > 0)
    std::cerr << (r.prompt_tokens - r.reused_tokens) / std::max(1e-9, r.prefill_seconds) << " tok/s prefill; " << n
              << " generated, " << n / std::max(1e-9, r.decode_seconds) << " tok/s; finish: ";
  else
    std::cerr << "stopped in the prefill; finish: ";
  std::cerr << (r.finish == FinishReason::cancelled ? "interrupted" : finish_reason_name(r.finish));
  if (r.spec.steps > 0) {
    char line[160];
    std::snprintf(line, sizeof line, "; speculative %s, draft %d: %.2f tokens per pass, %.0f%% of %lld drafts accepted",
                  spec_mode_name(req_spec), req_draft, r.spec.tokens_per_step(), 100 * r.spec.acceptance(),
                  r.spec.drafted);
    std::cerr << line;
  }
  std::cerr << "]\n";
  return {parser.message().to_json(), r.finish == FinishReason::cancelled};
}

}  // namespace dsv4::tools
