// dsv4 eval: pass@1 per post-training domain (src/posttrain/eval.h) for a model, in chat or
// thinking mode; with --json one object {"domain": pass_at_1, ...}.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "core/check.h"
#include "core/thread_pool.h"
#include "posttrain/eval.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct EvalArgs {
  std::string model_dir, mode = "chat";
  std::vector<std::string> domains;
  EvalOptions o;
  int threads = 0;
  bool json = false, show = false;
};

int run(EvalArgs& a) {
  set_num_threads(a.threads);
  DSV4_CHECK(a.mode == "chat" || a.mode == "thinking", "--mode must be chat or thinking, got ", a.mode);
  DSV4_CHECK(a.o.task_seed >= kEvalSeeds, "--task-seed must be at least ", kEvalSeeds,
             " (smaller seeds are training's tasks), got ", a.o.task_seed);
  a.o.thinking = a.mode == "thinking";
  if (!a.domains.empty()) {
    a.o.domains.clear();
    for (const std::string& d : a.domains) a.o.domains.push_back(parse_domain(d));
  }
  const Engine engine(a.model_dir);
  ProgressBar bar("eval");
  auto show = [](const Task& t, const std::string& text, double score) {
    std::fprintf(stderr, "\n--- %s (%s): %s\n%s\n", domain_name(t.domain), score > 0.5 ? "pass" : "fail", t.user.c_str(),
                 text.c_str());
  };
  const std::vector<DomainScore> scores = evaluate(
      engine, a.o, [&](int done, int total) { bar.update(double(done) / total); },
      a.show ? std::function<void(const Task&, const std::string&, double)>(show) : nullptr);
  bar.done();
  if (a.json) {
    std::printf("{");
    for (size_t i = 0; i < scores.size(); ++i)
      std::printf("%s\"%s\": %.4f", i ? ", " : "", domain_name(scores[i].domain), scores[i].pass_at_1());
    std::printf("}\n");
    return 0;
  }
  std::printf("%s, %s mode, %d tasks per domain (task seed %llu, level %d):\n", a.model_dir.c_str(), a.mode.c_str(),
              a.o.per_domain, static_cast<unsigned long long>(a.o.task_seed), a.o.level);
  // The binomial standard error of each pass rate: differences of a few of them are noise.
  for (const DomainScore& s : scores)
    std::printf("  %-8s pass@1 %.3f +- %.3f (%d / %d)\n", domain_name(s.domain), s.pass_at_1(),
                std::sqrt(s.pass_at_1() * (1 - s.pass_at_1()) / std::max(1, s.total)), s.passed, s.total);
  return 0;
}

}  // namespace

void add_eval(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand("eval", "pass@1 per post-training domain (math, code, agentic)");
  sub->add_option("-m,--model", a->model_dir, "checkpoint directory")->required();
  sub->add_option("--mode", a->mode, "chat or thinking");
  sub->add_option("--domain", a->domains, "only these domains (repeatable)");
  sub->add_option("--tasks", a->o.per_domain, "tasks per domain");
  sub->add_option("--task-seed", a->o.task_seed, "which tasks (at least 1000000: evaluation's)");
  add_level_option(sub, a->o.level);
  sub->add_option("--temperature", a->o.temperature, "sampling temperature (0 = greedy)");
  sub->add_option("--seed", a->o.sample_seed, "sampling seed");
  sub->add_option("--max-tokens", a->o.max_tokens, "tokens per answer");
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  sub->add_flag("--show", a->show, "print every task and completion to stderr");
  sub->add_flag("--json", a->json, "print {\"domain\": pass_at_1, ...}");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
