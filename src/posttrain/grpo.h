// GRPO on one domain with the engine's own sampling: every step the current policy is written
// out in the released format and loaded by the engine (so the samples come from exactly what
// dsv4 would serve), G completions are sampled per prompt, scored by the task's checker, their
// advantages normalized within the group; then the float policy takes `updates` gradient
// steps on the clipped-ratio loss with the KL penalty toward the reference (rl_loss.h),
// averaged per completion over its tokens and over the completions. A group whose completions
// all scored alike has no advantage and teaches nothing; with `max_draws` above `prompts`, a
// step draws further prompts until `prompts` groups differ (DAPO's dynamic sampling), so that
// a model that passes most tasks still learns from the ones it sometimes fails.
//
// On-policy distillation (distill): the student samples completions for prompts of every
// domain; the expert of each prompt's domain scores the student's tokens (its logits at the
// same positions), and the student minimizes the reverse KL to that expert at every position
// of its own completion. With `replay`, each step also takes the language-modelling loss on
// windows of a text (the base's pretraining data), so that the student keeps the prose and
// chat the base had while it learns the experts' domains. With `teacher_share`, that share of
// a step's prompts is answered by its expert instead (sampled by the engine from the expert's
// directory), and the student learns the same per-position KL along the expert's answer: on
// prompts where the student's own answers go wrong early, it sees where a good one goes.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "posttrain/tasks.h"
#include "train/param_set.h"
#include "train/rl_loss.h"
#include "train/schedule.h"
#include "train/train_model.h"

namespace dsv4 {

struct RlSettings {
  int steps = 30;
  int prompts = 4;      // prompts per step
  int group = 8;        // completions per prompt (GRPO) / per prompt (distill: 1 is usual)
  int updates = 1;      // gradient steps per batch of samples (> 1: the ratio moves off 1)
  int max_draws = 0;    // GRPO: groups sampled per step at most (0: `prompts`, none redrawn)
  int warmup = 0;       // steps over which the learning rate rises linearly to lr
  int max_tokens = 96;
  // The reasoning mode of the prompts: one mode, or both alternating prompt by prompt (so a
  // model evaluated in both modes is trained in both).
  enum class Modes { chat, thinking, both } modes = Modes::chat;
  bool thinking_at(int prompt_index) const {
    return modes == Modes::thinking || (modes == Modes::both && prompt_index % 2 == 1);
  }
  float lr = 2e-4f, temperature = 1.0f, grad_clip = 1.0f;
  // These settings at a step (0-based) of the loop: lr through the warm-up (then constant).
  RlSettings at_step(int step) const {
    RlSettings now = *this;
    now.lr = lr_at(step, warmup, steps, lr, 1.0f);
    return now;
  }
  int draws() const { return max_draws > 0 ? max_draws : prompts; }
  std::string optimizer = "adamw";
  uint64_t seed = kRlSeeds + 11;  // task seed of the prompts, in [kRlSeeds, kEvalSeeds) (tasks.h)
  int level = 1;                  // the tasks' difficulty (tasks.h)
  // distill: text (or FILE:WEIGHT sources, train_data.h) whose cross-entropy on `replay_sequences`
  // windows of `replay_len` tokens a step joins the KL, weighted by replay_weight.
  std::vector<std::string> replay;
  int replay_sequences = 2, replay_len = 256;
  float replay_weight = 1.0f;
  // distill: the share of each domain's prompts that its expert answers. Which ones: the k-th
  // prompt of a domain when the golden-ratio sequence at k (offset by half a turn per domain)
  // falls below the share, so that every domain gets its share, spread evenly and across both
  // reasoning modes (prompt k of a domain is in thinking mode when k is odd, under --mode both).
  double teacher_share = 0;
  bool teacher_answers(int domain, int k) const {
    return std::fmod((k + 1) * 0.6180339887498949 + domain * 0.5, 1.0) < teacher_share;
  }
  GrpoParams loss;
  // GRPO: greedy pass@1 on `eval_tasks` held-out tasks of the domain (evaluation's seed, the
  // run's level, each mode the run trains; what `dsv4 eval --tasks eval_tasks` measures) before
  // the first step, every `eval_every` steps and after the last; 0: never.
  int eval_every = 0, eval_tasks = 100;
};

struct RlLog {
  int step = 0;
  // GRPO: over all samples drawn; distill: the student's own pass rate (NaN when the experts
  // answered every prompt).
  double mean_reward = 0;
  int groups = 0, kept = 0;  // GRPO: groups drawn, and those whose rewards differ (learned from)
  double replay_loss = -1;   // distill with replay: the mean cross-entropy of its windows
  int expert_answers = 0;    // distill: prompts the experts answered
  double lr = 0;             // the step's learning rate
  double loss = 0, kl = 0;
  int tokens = 0;
  // distill: the per-token reverse KL of each domain's prompts (by domain name), which shows
  // which expert the student is still far from.
  std::map<std::string, double> domain_kl;
};

// A held-out evaluation during GRPO: greedy pass@1 after `step` steps, per mode trained (NaN
// for a mode the run does not train).
struct RlEval {
  int step = 0, tasks = 0;
  double chat = std::nan(""), thinking = std::nan("");
};

struct RlCallbacks {
  std::function<void(const RlLog&, int total)> on_step;
  std::function<void(const RlEval&)> on_eval;
  std::function<void(const std::string&)> on_message;
};

// One sampled completion: ids = prompt + completion (+ EOS when the model stopped there).
struct RlSample {
  std::vector<int> ids;
  int prompt_len = 0;
  double reward = 0, advantage = 0;
  int completion_len() const { return static_cast<int>(ids.size()) - prompt_len; }
};

// The float policy a loop trains: its weights (the caller's), their gradients, the optimizer
// and the rope tables. Not copyable: the optimizer points into the weights and gradients.
struct Policy {
  Policy(const ModelConfig& c, TrainWeights& w, const std::string& optimizer);
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;
  const ModelConfig& c;
  TrainWeights& w;
  TrainWeights g;
  ParamSet ps;
  TrainRopes ropes;
};

// GRPO's `s.updates` gradient steps on completions already scored (advantage set; those of a
// group that scored alike carry none and are best left out): the clipped-ratio loss plus the
// KL penalty toward ref (rl_loss.h), averaged per completion over its tokens, then over the
// completions. Adds the completions' tokens to l.tokens and sets l.loss and l.kl (per token).
void grpo_update(Policy& p, const TrainWeights& ref, const std::vector<RlSample*>& learn, const RlSettings& s,
                 RlLog& l);

// policy_dir: the model to improve (its float state if it has one); ref_dir: the frozen
// reference; writes out_dir as a model directory (released checkpoint + float state +
// rl_log.tsv, with eval_every rl_eval.tsv) and rl.png, the sampled reward per step (and the
// held-out pass@1) as a plot. Returns the log.
std::vector<RlLog> run_grpo(const std::string& policy_dir, const std::string& ref_dir, Domain domain,
                            const std::string& out_dir, const RlSettings& s, const RlCallbacks& cb = {});

// student_dir: the model to train; experts: the teacher of each domain; prompts cycle through
// the experts' domains.
std::vector<RlLog> run_distill(const std::string& student_dir, const std::map<Domain, std::string>& experts,
                               const std::string& out_dir, const RlSettings& s, const RlCallbacks& cb = {});

}  // namespace dsv4
