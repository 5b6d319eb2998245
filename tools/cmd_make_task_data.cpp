// dsv4 make-task-data: supervised examples of a post-training domain (src/posttrain/tasks.h),
// JSON lines {"domain", "mode", "prompt", "completion"} that `dsv4 train` / `dsv4 sft` read.
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/write_file.h"
#include "posttrain/tasks.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace dsv4::tools {

namespace {

struct TaskDataArgs {
  std::vector<std::string> domains;
  std::string out, mode = "both";
  int count = 2000;
  uint64_t seed = 1;
  int level = 1;
};

int run(const TaskDataArgs& a) {
  DSV4_CHECK(a.mode == "chat" || a.mode == "thinking" || a.mode == "both", "--mode must be chat, thinking or both");
  DSV4_CHECK(a.count >= 1, "--count must be at least 1");
  DSV4_CHECK(a.seed < kRlSeeds, "--seed must be below ", kRlSeeds, " (larger seeds are GRPO's prompts and evaluation's tasks)");
  std::vector<Domain> domains;
  for (const std::string& d : a.domains) domains.push_back(parse_domain(d));
  std::ofstream out(a.out);
  DSV4_CHECK(out.good(), a.out, ": cannot be written");
  for (int i = 0; i < a.count; ++i) {
    const Domain d = domains[i % domains.size()];
    const bool thinking = a.mode == "thinking" || (a.mode == "both" && (i / domains.size()) % 2 == 1);
    const RenderedTask r = render_task(task_at(d, a.seed, i, a.level), thinking);
    out << nlohmann::ordered_json{{"domain", domain_name(d)}, {"mode", thinking ? "thinking" : "chat"},
                                  {"prompt", r.prompt}, {"completion", r.completion}}.dump()
        << "\n";
  }
  close_checked(out, a.out);
  std::cerr << "wrote " << a.count << " examples to " << a.out << "\n";
  return 0;
}

}  // namespace

void add_make_task_data(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<TaskDataArgs>();
  CLI::App* sub = app.add_subcommand("make-task-data", "supervised examples of post-training domains");
  sub->add_option("--domain", a->domains, "math, code or agentic (repeatable: examples alternate)")->required();
  sub->add_option("-o,--out", a->out, "JSON lines to write")->required();
  sub->add_option("--count", a->count, "examples");
  sub->add_option("--mode", a->mode, "chat, thinking or both (default: alternate)");
  sub->add_option("--seed", a->seed, "task seed (below 500000)");
  add_level_option(sub, a->level);
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
