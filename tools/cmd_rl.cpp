// dsv4 sft / grpo / distill / average: the post-training stages (src/posttrain): supervised fine-tuning
// of a copy of a model on chat-format data, GRPO on one domain's checked tasks, and on-policy
// distillation of several domain experts into one student, and averaging of their weights.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/memory.h"
#include "core/read_file.h"
#include "core/thread_pool.h"
#include "core/write_file.h"
#include "posttrain/average.h"
#include "posttrain/grpo.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/progress.h"
#include "train/trainer.h"

namespace dsv4::tools {

namespace {

struct SftArgs {
  std::string model_dir, out, eval;
  std::vector<std::string> data;
  long long steps = 150;
  int batch = 4, seq_len = 512, threads = 0;
  float lr = 1e-3f;
  uint64_t seed = 3;
};

int run_sft(const SftArgs& a) {
  set_num_threads(a.threads);
  keep_freed_memory();
  namespace fs = std::filesystem;
  fs::create_directories(a.out);
  const nlohmann::json model = nlohmann::json::parse(read_file((fs::path(a.model_dir) / "config.json").string()));
  const nlohmann::json settings = {{"steps", a.steps}, {"batch", a.batch}, {"seq_len", a.seq_len}, {"lr", a.lr},
                                {"warmup", std::min<long long>(10, a.steps / 10)}, {"seed", a.seed},
                                {"eval_every", std::max<long long>(1, a.steps / 5)}, {"save_every", a.steps},
                                {"mtp_weight", 0.3}};
  const std::string cfg = (fs::path(a.out) / "sft_config.json").string();
  write_file(cfg, nlohmann::json{{"model", model}, {"train", settings}}.dump(2) + "\n");
  TrainRun run;
  run.config_path = cfg, run.out_dir = a.out, run.init_dir = a.model_dir, run.data = a.data, run.eval_path = a.eval;
  run.tokenizer_path = (fs::path(a.model_dir) / "tokenizer.json").string();
  ProgressBar bar("sft");
  run.on_message = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
  run.on_step = [&](const StepLog& l, long long total) {
    char extra[120];
    std::snprintf(extra, sizeof extra, "step %lld/%lld loss %.3f", l.step, total, l.loss);
    bar.update(double(l.step) / total, extra);
  };
  const std::vector<StepLog> log = train(run);
  bar.done();
  std::printf("fine-tuned %s for %lld steps: loss %.4f -> %.4f; wrote %s\n", a.model_dir.c_str(), a.steps,
              log.front().loss, log.back().loss, a.out.c_str());
  return 0;
}

struct RlArgs {
  std::string model_dir, ref_dir, out, domain;
  std::vector<std::string> experts;  // domain=DIR
  RlSettings s;
  std::string mode = "chat";
  int threads = 0;
};

RlCallbacks callbacks(ProgressBar& bar) {
  RlCallbacks cb;
  cb.on_message = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
  cb.on_step = [&bar](const RlLog& l, int total) {
    char extra[160];
    int n = std::snprintf(extra, sizeof extra, "step %d/%d reward %.3f loss %.4f kl %.4f", l.step, total,
                          l.mean_reward, l.loss, l.kl);
    if (l.groups > 0 && n > 0 && n < int(sizeof extra))
      n += std::snprintf(extra + n, sizeof extra - n, " groups %d/%d", l.kept, l.groups);
    if (l.replay_loss >= 0 && n > 0 && n < int(sizeof extra))
      std::snprintf(extra + n, sizeof extra - n, " replay %.3f", l.replay_loss);
    bar.update(double(l.step) / total, extra);
  };
  cb.on_eval = [&bar](const RlEval& e) {
    std::string line = "held-out pass@1 after " + std::to_string(e.step) + " steps (" + std::to_string(e.tasks) +
                       " tasks, greedy):";
    char v[32];
    if (!std::isnan(e.chat)) std::snprintf(v, sizeof v, " chat %.3f", e.chat), line += v;
    if (!std::isnan(e.thinking)) std::snprintf(v, sizeof v, " thinking %.3f", e.thinking), line += v;
    bar.message(line);
  };
  return cb;
}

void choose_modes(RlArgs& a) {
  DSV4_CHECK(a.mode == "chat" || a.mode == "thinking" || a.mode == "both",
             "--mode must be chat, thinking or both, got ", a.mode);
  a.s.modes = a.mode == "chat" ? RlSettings::Modes::chat
              : a.mode == "thinking" ? RlSettings::Modes::thinking
                                     : RlSettings::Modes::both;
}

int run_grpo_cmd(RlArgs& a) {
  set_num_threads(a.threads);
  keep_freed_memory();
  choose_modes(a);
  ProgressBar bar("grpo");
  const std::vector<RlLog> log =
      run_grpo(a.model_dir, a.ref_dir.empty() ? a.model_dir : a.ref_dir, parse_domain(a.domain), a.out, a.s, callbacks(bar));
  bar.done();
  std::printf("GRPO on %s: mean reward %.3f (first step) -> %.3f (last); wrote %s\n", a.domain.c_str(),
              log.front().mean_reward, log.back().mean_reward, a.out.c_str());
  return 0;
}

int run_distill_cmd(RlArgs& a) {
  set_num_threads(a.threads);
  keep_freed_memory();
  choose_modes(a);
  std::map<Domain, std::string> experts;
  for (const std::string& e : a.experts) {
    const size_t eq = e.find('=');
    DSV4_CHECK(eq != std::string::npos, "--expert must be DOMAIN=DIR, got ", e);
    const Domain d = parse_domain(e.substr(0, eq));
    DSV4_CHECK(!experts.count(d), "two experts for ", e.substr(0, eq));
    experts[d] = e.substr(eq + 1);
  }
  ProgressBar bar("distill");
  const std::vector<RlLog> log = run_distill(a.model_dir, experts, a.out, a.s, callbacks(bar));
  bar.done();
  std::printf("distilled %zu experts: reverse KL %.4f (first step) -> %.4f (last); wrote %s\n", experts.size(),
              log.front().kl, log.back().kl, a.out.c_str());
  return 0;
}

struct AverageArgs {
  std::vector<std::string> models;
  std::string out;
};

void rl_options(CLI::App* sub, RlArgs& a) {
  sub->add_option("--out", a.out, "output model directory")->required();
  sub->add_option("--steps", a.s.steps, "steps");
  sub->add_option("--prompts", a.s.prompts, "prompts per step");
  sub->add_option("--group", a.s.group, "completions sampled per prompt");
  sub->add_option("--updates", a.s.updates, "gradient steps per batch of samples");
  sub->add_option("--max-tokens", a.s.max_tokens, "tokens per completion");
  sub->add_option("--lr", a.s.lr, "learning rate");
  sub->add_option("--warmup", a.s.warmup, "steps over which the learning rate rises linearly to --lr");
  sub->add_option("--temperature", a.s.temperature, "sampling temperature");
  sub->add_option("--seed", a.s.seed, "task seed of the prompts (500000 to 999999: GRPO's and distillation's tasks)");
  add_level_option(sub, a.s.level);
  sub->add_option("--mode", a.mode, "chat, thinking, or both alternating by prompt");
  sub->add_option("--optimizer", a.s.optimizer, "adamw or muon");
  sub->add_option("--threads", a.threads, "worker threads (0 = all cores)");
}

}  // namespace

void add_post_training(CLI::App& app, std::vector<Command>& out) {
  auto s = std::make_shared<SftArgs>();
  CLI::App* sft = app.add_subcommand("sft", "supervised fine-tuning of a copy of a model on chat examples");
  sft->add_option("-m,--model", s->model_dir, "the model to start from")->required();
  sft->add_option("--data", s->data, "chat examples (.jsonl), or text; FILE:WEIGHT mixes")->required();
  sft->add_option("--out", s->out, "output model directory")->required();
  sft->add_option("--eval", s->eval, "held-out text");
  sft->add_option("--steps", s->steps, "steps");
  sft->add_option("--batch", s->batch, "sequences per step");
  sft->add_option("--seq-len", s->seq_len, "tokens per sequence");
  sft->add_option("--lr", s->lr, "peak learning rate");
  sft->add_option("--seed", s->seed, "data order");
  sft->add_option("--threads", s->threads, "worker threads (0 = all cores)");
  out.push_back({sft, [s] { return run_sft(*s); }});

  auto g = std::make_shared<RlArgs>();
  CLI::App* grpo = app.add_subcommand("grpo", "GRPO on one domain's checked tasks with dsv4's own sampling");
  grpo->add_option("-m,--model", g->model_dir, "the policy to improve")->required();
  grpo->add_option("--ref", g->ref_dir, "the reference of the KL penalty (default: the starting policy)");
  grpo->add_option("--domain", g->domain, "math, code or agentic")->required();
  grpo->add_option("--clip", g->s.loss.clip, "ratio clip");
  grpo->add_option("--beta", g->s.loss.beta, "KL weight");
  grpo->add_option("--max-draws", g->s.max_draws,
                   "groups sampled per step at most, until --prompts of them differ in reward (default: --prompts)");
  grpo->add_option("--eval-every", g->s.eval_every,
                   "greedy pass@1 on held-out tasks before the first step, every N steps and after the last (0: never)");
  grpo->add_option("--eval-tasks", g->s.eval_tasks, "held-out tasks per evaluation")->capture_default_str();
  rl_options(grpo, *g);
  out.push_back({grpo, [g] { return run_grpo_cmd(*g); }});

  auto d = std::make_shared<RlArgs>();
  d->s.group = 2;
  CLI::App* distill = app.add_subcommand("distill", "on-policy distillation of domain experts into one student");
  distill->add_option("-m,--model", d->model_dir, "the student to train")->required();
  distill->add_option("--expert", d->experts, "DOMAIN=DIR, one per domain (repeatable)")->required();
  distill->add_option("--teacher-share", d->s.teacher_share,
                      "the share of each step's prompts that the experts answer (the student learns along them)");
  distill->add_option("--replay", d->s.replay,
                      "text (FILE or FILE:WEIGHT, repeatable) whose cross-entropy each step also learns");
  distill->add_option("--replay-sequences", d->s.replay_sequences, "replay windows per step")->capture_default_str();
  distill->add_option("--replay-len", d->s.replay_len, "tokens per replay window")->capture_default_str();
  distill->add_option("--replay-weight", d->s.replay_weight, "the replay loss's weight beside the KL")
      ->capture_default_str();
  rl_options(distill, *d);
  out.push_back({distill, [d] { return run_distill_cmd(*d); }});

  auto avg = std::make_shared<AverageArgs>();
  CLI::App* average = app.add_subcommand("average", "average the weights of models fine-tuned from one base");
  average->add_option("models", avg->models, "model directories, each DIR or DIR:SHARE")
      ->required()
      ->expected(2, -1);
  average->add_option("-o,--out", avg->out, "output model directory")->required();
  out.push_back({average, [avg] {
                   average_model_dirs(avg->models, avg->out);
                   std::printf("averaged %zu models; wrote %s\n", avg->models.size(), avg->out.c_str());
                   return 0;
                 }});
}

}  // namespace dsv4::tools
