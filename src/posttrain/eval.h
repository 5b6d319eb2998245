// pass@1 per domain: each task's prompt rendered in the chosen reasoning mode, one completion
// sampled by the engine (greedy by default, or at a temperature with a fixed seed), parsed by
// the V4 parser and scored by the task's checker. The tasks are the i-th of each domain for
// an evaluation seed that training data does not use.
#pragma once

#include <functional>
#include <vector>

#include "posttrain/tasks.h"
#include "runtime/engine.h"

namespace dsv4 {

struct EvalOptions {
  int per_domain = 40;
  bool thinking = false;
  uint64_t task_seed = kEvalSeeds + 3;  // evaluation's tasks (tasks.h)
  int level = 1;                        // their difficulty (tasks.h)
  float temperature = 0.0f;
  uint64_t sample_seed = 1;
  int max_tokens = 160;
  std::vector<Domain> domains = all_domains();
};

struct DomainScore {
  Domain domain;
  int passed = 0, total = 0;
  double pass_at_1() const { return total ? double(passed) / total : 0.0; }
};

// One completion of a task: the prompt's ids, the generated ids and text, both ending with
// EOS when the model stopped there.
struct Completion {
  std::vector<int> prompt, tokens;
  std::string text;
};
Completion complete_task(const Engine& e, const Task& t, bool thinking, const SamplingParams& s, int max_tokens);
// The score of a completion: the checker's on the parsed message, 0 when it does not parse.
double score_completion(const Task& t, const std::string& completion, bool thinking);

// show (if set) sees every task, its completion and score.
std::vector<DomainScore> evaluate(const Engine& e, const EvalOptions& o,
                                  const std::function<void(int done, int total)>& progress = {},
                                  const std::function<void(const Task&, const std::string&, double)>& show = {});

}  // namespace dsv4
