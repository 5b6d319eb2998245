#include "posttrain/grpo.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "core/check.h"
#include "core/write_file.h"
#include "posttrain/eval.h"
#include "posttrain/model_dir.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"
#include "train/param_set.h"
#include "train/plot.h"
#include "train/train_data.h"
#include "train/train_model.h"
#include "train/train_state.h"

namespace dsv4 {

namespace fs = std::filesystem;

namespace {

// A model directory loaded, saying where its weights came from.
ModelDir load_model(const std::string& dir, const RlCallbacks& cb) {
  std::string from;
  ModelDir m = ModelDir::load(dir, &from);
  if (cb.on_message) cb.on_message("loaded " + from);
  return m;
}

std::vector<RlSample> sample_group(const Engine& e, const Task& t, bool thinking, const RlSettings& s, uint64_t seed) {
  std::vector<RlSample> out;
  for (int g = 0; g < s.group; ++g) {
    SamplingParams sp;
    sp.temperature = s.temperature, sp.seed = seed * 1000 + static_cast<uint64_t>(g);
    const Completion c = complete_task(e, t, thinking, sp, s.max_tokens);
    RlSample smp;
    smp.ids = c.prompt;
    smp.prompt_len = static_cast<int>(c.prompt.size());
    smp.ids.insert(smp.ids.end(), c.tokens.begin(), c.tokens.end());
    smp.reward = score_completion(t, c.text, thinking);
    if (smp.completion_len() > 0) out.push_back(std::move(smp));
  }
  return out;
}

// The model's inputs and uncounted targets for a sample (the loss is the caller's head_loss).
std::vector<int> inputs_of(const RlSample& s) { return std::vector<int>(s.ids.begin(), s.ids.end() - 1); }

// Rows [prompt_len - 1, end) of a sample's logits predict its completion tokens.
std::vector<float> completion_logits(const TrainWeights& w, const ModelConfig& c, const TrainRopes& ropes,
                                     const RlSample& s) {
  const std::vector<float> all = train_logits(w, c, ropes, inputs_of(s));
  const size_t V = c.vocab_size;
  return std::vector<float>(all.begin() + (s.prompt_len - 1) * V, all.end());
}

// One row per step; distillation adds a kl_<domain> column per expert (empty where a step
// had no prompt of that domain).
void write_log(const std::string& path, const std::vector<RlLog>& log) {
  std::set<std::string> domains;
  for (const RlLog& l : log)
    for (const auto& [d, kl] : l.domain_kl) domains.insert(d);
  const bool groups = std::any_of(log.begin(), log.end(), [](const RlLog& l) { return l.groups > 0; });
  const bool replay = std::any_of(log.begin(), log.end(), [](const RlLog& l) { return l.replay_loss >= 0; });
  const bool answers = std::any_of(log.begin(), log.end(), [](const RlLog& l) { return l.expert_answers > 0; });
  std::ofstream f(path);
  f << "step\tlr\tmean_reward\tloss\tkl\ttokens";
  if (groups) f << "\tgroups\tkept";
  if (replay) f << "\treplay_loss";
  if (answers) f << "\texpert_answers";
  for (const std::string& d : domains) f << "\tkl_" << d;
  f << "\n";
  for (const RlLog& l : log) {
    f << l.step << "\t" << l.lr << "\t" << l.mean_reward << "\t" << l.loss << "\t" << l.kl << "\t" << l.tokens;
    if (groups) f << "\t" << l.groups << "\t" << l.kept;
    if (replay) f << "\t" << l.replay_loss;
    if (answers) f << "\t" << l.expert_answers;
    for (const std::string& d : domains) {
      f << "\t";
      if (l.domain_kl.count(d)) f << l.domain_kl.at(d);
    }
    f << "\n";
  }
  close_checked(f, path);
}

// Greedy pass@1 of the served policy on held-out tasks of its domain, in each mode it trains.
RlEval held_out_eval(const Engine& e, Domain d, const RlSettings& s, int step) {
  RlEval r;
  r.step = step, r.tasks = s.eval_tasks;
  EvalOptions o;
  o.per_domain = s.eval_tasks, o.level = s.level, o.domains = {d};
  for (const bool thinking : {false, true}) {
    const bool trained = s.modes == RlSettings::Modes::both || (s.modes == RlSettings::Modes::thinking) == thinking;
    if (!trained) continue;
    o.thinking = thinking;
    (thinking ? r.thinking : r.chat) = evaluate(e, o).front().pass_at_1();
  }
  return r;
}

void write_eval_log(const std::string& path, const std::vector<RlEval>& evals) {
  std::ofstream f(path);
  f << "step\ttasks\tchat\tthinking\n";
  for (const RlEval& e : evals) {
    f << e.step << "\t" << e.tasks << "\t";
    if (!std::isnan(e.chat)) f << e.chat;
    f << "\t";
    if (!std::isnan(e.thinking)) f << e.thinking;
    f << "\n";
  }
  close_checked(f, path);
}

// The sampled reward per step, averaged over 10 steps (a step's few prompts make it swing),
// and the held-out pass@1 per mode, on one plot.
void plot_grpo(const std::string& path, Domain d, const std::vector<RlLog>& log, const std::vector<RlEval>& evals) {
  PlotSeries reward{"mean sampled reward (moving average of 10 steps)", {}, {}, 0x1f77b4};
  for (size_t i = 0; i < log.size(); ++i) {
    const size_t from = i >= 9 ? i - 9 : 0;
    double sum = 0;
    for (size_t k = from; k <= i; ++k) sum += log[k].mean_reward;
    reward.x.push_back(log[i].step), reward.y.push_back(sum / double(i + 1 - from));
  }
  std::vector<PlotSeries> series{reward};
  const std::string tasks = evals.empty() ? "" : " (" + std::to_string(evals.front().tasks) + " held-out tasks)";
  PlotSeries chat{"greedy pass@1, chat mode" + tasks, {}, {}, 0xd62728},
      thinking{"greedy pass@1, thinking mode" + tasks, {}, {}, 0x2ca02c};
  for (const RlEval& e : evals) {
    if (!std::isnan(e.chat)) chat.x.push_back(e.step), chat.y.push_back(e.chat);
    if (!std::isnan(e.thinking)) thinking.x.push_back(e.step), thinking.y.push_back(e.thinking);
  }
  for (const PlotSeries& p : {chat, thinking})
    if (!p.x.empty()) series.push_back(p);
  write_line_plot_png(path, series, {std::string("GRPO on ") + domain_name(d), "step", "reward, pass@1", 900, 540, false});
}

void check_settings(const RlSettings& s) {
  DSV4_CHECK(s.steps >= 1 && s.prompts >= 1 && s.group >= 1 && s.updates >= 1 && s.max_tokens >= 1,
             "steps, prompts, group, updates and max_tokens must be at least 1");
  DSV4_CHECK(s.max_draws == 0 || s.max_draws >= s.prompts, "--max-draws (", s.max_draws,
             ") must be at least --prompts (", s.prompts, ")");
  DSV4_CHECK(s.warmup >= 0, "--warmup must be >= 0, got ", s.warmup);
  DSV4_CHECK(s.eval_every >= 0, "--eval-every must be >= 0, got ", s.eval_every);
  DSV4_CHECK(s.eval_tasks >= 1, "--eval-tasks must be at least 1, got ", s.eval_tasks);
  DSV4_CHECK(s.teacher_share >= 0 && s.teacher_share <= 1, "--teacher-share must be in [0, 1], got ", s.teacher_share);
  DSV4_CHECK(s.replay_sequences >= 1, "--replay-sequences must be at least 1, got ", s.replay_sequences);
  DSV4_CHECK(s.replay_len >= 2, "--replay-len must be at least 2, got ", s.replay_len);
  DSV4_CHECK(s.replay_weight >= 0, "--replay-weight must be >= 0, got ", s.replay_weight);
  DSV4_CHECK(s.seed >= kRlSeeds && s.seed < kEvalSeeds, "--seed must be from ", kRlSeeds, " to ", kEvalSeeds - 1,
             " (smaller seeds are supervised data's tasks, larger ones evaluation's), got ", s.seed);
  DSV4_CHECK(s.temperature > 0, "sampling needs a temperature above 0");
  DSV4_CHECK(s.lr > 0 && s.grad_clip > 0, "lr and grad_clip must be positive");
  DSV4_CHECK(s.loss.clip >= 0 && s.loss.clip < 1, "--clip must be in [0, 1), got ", s.loss.clip);
  DSV4_CHECK(s.loss.beta >= 0, "--beta must be >= 0, got ", s.loss.beta);
}

// The model a loop trains: its directory's contents, its float policy, its log.
struct Trainee {
  ModelDir m;
  Policy policy;
  std::string out_dir, serving;
  const RlSettings& s;
  const RlCallbacks& cb;
  std::vector<RlLog> log;

  Trainee(const std::string& dir, const std::string& out, const RlSettings& settings, const RlCallbacks& callbacks)
      : m(load_model(dir, callbacks)),
        policy(m.c, m.w, settings.optimizer),
        out_dir(out),
        serving((fs::path(out) / "policy").string()),
        s(settings),
        cb(callbacks) {}
  Trainee(const Trainee&) = delete;
  Trainee& operator=(const Trainee&) = delete;

  // The current weights in the released format, loaded by the engine: the samples come from
  // what dsv4 serves.
  std::unique_ptr<Engine> serve() const {
    write_released_dir(serving, m.c, m.config_json, m.tokenizer_json, m.w);
    return std::make_unique<Engine>(serving);
  }
  void logged(const RlLog& l) {
    log.push_back(l);
    if (cb.on_step) cb.on_step(l, s.steps);
  }
  // Writes the trained model (with its float state) and the log.
  std::vector<RlLog> finish() {
    write_model_dir(out_dir, m.c, m.config_json, m.tokenizer_json, m.w);
    fs::remove_all(serving);
    write_log((fs::path(out_dir) / "rl_log.tsv").string(), log);
    return log;
  }
};

// One gradient step of the policy over samples, the per-position loss given by token_loss(i,
// position, logits row, dlogits row) -> loss (already scaled), and over replay windows (their
// cross-entropy, and the MTP head's, weighted by s.replay_weight). Returns the replay windows'
// mean cross-entropy (-1 without them).
template <class F>
double policy_step(Policy& p, const std::vector<RlSample*>& samples, const RlSettings& s, F token_loss,
                   const std::vector<TrainSequence>& replay = {}) {
  p.ps.zero_grads();
  const size_t V = p.c.vocab_size;
  double tokens = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const RlSample& smp = *samples[i];
    const std::vector<int> inputs = inputs_of(smp);
    const std::vector<int> targets(inputs.size(), -1);
    SequenceOptions o;
    o.mtp_weight = 0;
    o.head_loss = [&](std::span<const float> logits, std::span<float> dlogits) {
      std::fill(dlogits.begin(), dlogits.end(), 0.0f);
      double loss = 0;
      for (int k = 0; k < smp.completion_len(); ++k) {
        const size_t row = size_t(smp.prompt_len - 1 + k) * V;
        loss += token_loss(i, k, logits.subspan(row, V), dlogits.subspan(row, V));
      }
      return loss;
    };
    train_sequence(p.w, p.c, p.ropes, inputs, targets, o, &p.g);
    tokens += double(inputs.size());
  }
  double replay_loss = 0;
  for (const TrainSequence& r : replay) {
    SequenceOptions o;
    o.grad_scale = s.replay_weight / float(replay.size());
    replay_loss += train_sequence(p.w, p.c, p.ropes, r.inputs, r.targets, o, &p.g).main / double(replay.size());
    tokens += double(r.inputs.size());
  }
  if (tokens > 0) p.ps.scale_indexer_grads(tokens);
  p.ps.step(s.lr, s.grad_clip);
  return replay.empty() ? -1 : replay_loss;
}

}  // namespace

Policy::Policy(const ModelConfig& config, TrainWeights& weights, const std::string& optimizer)
    : c(config), w(weights), g(zero_weights(config)), ps(config, weights, g, optimizer, 0.0f), ropes(config) {}

void grpo_update(Policy& p, const TrainWeights& ref, const std::vector<RlSample*>& learn, const RlSettings& s,
                 RlLog& l) {
  if (learn.empty()) return;
  // Log-probs under the reference and (for several updates) the sampling policy, per token.
  std::vector<std::vector<double>> ref_lp(learn.size()), old_lp(learn.size());
  const size_t V = p.c.vocab_size;
  for (size_t i = 0; i < learn.size(); ++i) {
    const RlSample& x = *learn[i];
    const std::vector<float> rl = completion_logits(ref, p.c, p.ropes, x);
    const std::vector<float> ol = s.updates > 1 ? completion_logits(p.w, p.c, p.ropes, x) : std::vector<float>();
    for (int k = 0; k < x.completion_len(); ++k) {
      const int tok = x.ids[x.prompt_len + k];
      ref_lp[i].push_back(log_prob(std::span<const float>(rl).subspan(k * V, V), tok));
      if (!ol.empty()) old_lp[i].push_back(log_prob(std::span<const float>(ol).subspan(k * V, V), tok));
    }
    l.tokens += x.completion_len();
  }
  for (int u = 0; u < s.updates; ++u) {
    double loss = 0, kl = 0;
    policy_step(p, learn, s, [&](size_t i, int k, std::span<const float> row, std::span<float> drow) {
      const RlSample& x = *learn[i];
      const int tok = x.ids[x.prompt_len + k];
      const double logp = log_prob(row, tok);
      const double old = old_lp[i].empty() ? logp : old_lp[i][k];
      const TokenLoss t = grpo_token_loss(logp, old, ref_lp[i][k], x.advantage, s.loss);
      // GRPO's mean: over a completion's tokens, then over the completions.
      const double scale = 1.0 / (double(x.completion_len()) * double(learn.size()));
      log_prob_backward(row, tok, t.dlogp * scale, drow);
      const double d = ref_lp[i][k] - logp;
      kl += (std::exp(d) - d - 1) / l.tokens;
      loss += t.loss * scale;
      return t.loss * scale;
    });
    l.loss = loss, l.kl = kl;
  }
}

std::vector<RlLog> run_grpo(const std::string& policy_dir, const std::string& ref_dir, Domain domain,
                            const std::string& out_dir, const RlSettings& s, const RlCallbacks& cb) {
  check_settings(s);
  Trainee tr(policy_dir, out_dir, s, cb);
  const ModelDir& m = tr.m;
  ModelDir r = load_model(ref_dir, cb);
  check_same_model(m, r, ref_dir);
  const TrainWeights ref = std::move(r.w);
  int index = 0;  // the next task's: prompts are never repeated, whatever was redrawn
  std::vector<RlEval> evals;
  const auto evaluated = [&](const Engine& e, int step) {
    evals.push_back(held_out_eval(e, domain, s, step));
    if (cb.on_eval) cb.on_eval(evals.back());
  };
  for (int step = 0; step < s.steps; ++step) {
    const std::unique_ptr<Engine> engine = tr.serve();
    if (s.eval_every > 0 && step % s.eval_every == 0) evaluated(*engine, step);
    std::vector<RlSample> samples;
    size_t drawn = 0;
    const RlSettings now = s.at_step(step);
    RlLog l;
    l.step = step + 1;
    l.lr = now.lr;
    int groups = 0;
    while (l.kept < s.prompts && groups < s.draws()) {
      std::vector<RlSample> group =
          sample_group(*engine, task_at(domain, s.seed, index, s.level), s.thinking_at(index), s, uint64_t(index) + 1);
      ++index, ++groups;
      std::vector<double> rewards;
      for (const RlSample& x : group) rewards.push_back(x.reward), l.mean_reward += x.reward;
      const std::vector<double> adv = group_advantages(rewards);
      for (size_t k = 0; k < group.size(); ++k) group[k].advantage = adv[k];
      // Completions whose group all scored the same carry no advantage: only the KL term would
      // move them, and it is left out with them.
      const bool differ = std::any_of(adv.begin(), adv.end(), [](double a) { return a != 0; });
      l.kept += differ;
      drawn += group.size();
      if (differ)
        for (RlSample& x : group) samples.push_back(std::move(x));
    }
    l.mean_reward /= std::max<size_t>(1, drawn);
    if (s.draws() > s.prompts) l.groups = groups;  // logged only where groups are redrawn
    std::vector<RlSample*> learn;
    for (RlSample& x : samples)
      if (x.advantage != 0) learn.push_back(&x);
    grpo_update(tr.policy, ref, learn, now, l);
    tr.logged(l);
  }
  const std::vector<RlLog> log = tr.finish();
  if (s.eval_every > 0) evaluated(Engine(out_dir), s.steps);  // the model written
  if (!evals.empty()) write_eval_log((fs::path(out_dir) / "rl_eval.tsv").string(), evals);
  plot_grpo((fs::path(out_dir) / "rl.png").string(), domain, log, evals);
  return log;
}

std::vector<RlLog> run_distill(const std::string& student_dir, const std::map<Domain, std::string>& experts,
                               const std::string& out_dir, const RlSettings& s, const RlCallbacks& cb) {
  check_settings(s);
  DSV4_CHECK(!experts.empty(), "distill: no experts");
  Trainee tr(student_dir, out_dir, s, cb);
  const ModelDir& m = tr.m;
  std::map<Domain, TrainWeights> teachers;
  std::vector<Domain> domains;
  // The replay text in the student's tokens.
  std::vector<TrainSource> replay;
  if (!s.replay.empty()) {
    const Tokenizer tok = Tokenizer::from_json(m.tokenizer_json, student_dir + "/tokenizer.json");
    for (const std::string& spec : s.replay) {
      replay.push_back(load_train_source(spec, tok, m.c.bos_token_id));
      const TrainSource& r = replay.back();
      DSV4_CHECK(!r.stream.empty() || !r.examples.empty(), spec, ": no text to replay");
      DSV4_CHECK(r.stream.empty() || r.stream.size() > size_t(s.replay_len), spec, ": ", r.stream.size(),
                 " tokens, fewer than a --replay-len window (", s.replay_len, ") and its next token");
    }
  }
  std::map<Domain, std::unique_ptr<Engine>> teacher_engines;  // for the prompts experts answer
  for (const auto& [d, dir] : experts) {
    ModelDir t = load_model(dir, cb);
    check_same_model(m, t, dir);
    teachers.emplace(d, std::move(t.w));
    domains.push_back(d);
    if (s.teacher_share > 0) teacher_engines.emplace(d, std::make_unique<Engine>(dir));
  }
  for (int step = 0; step < s.steps; ++step) {
    const std::unique_ptr<Engine> engine = tr.serve();
    std::vector<RlSample> samples;
    std::vector<Domain> sample_domain;
    const RlSettings now = s.at_step(step);
    RlLog l;
    l.step = step + 1;
    l.lr = now.lr;
    int own = 0;  // the student's samples (the reward is its pass rate)
    for (int p = 0; p < s.prompts; ++p) {
      const int index = step * s.prompts + p;
      // Domains cycle with the prompt index; modes and the experts' share go by each domain's
      // count of prompts (each round of domains).
      const int n = static_cast<int>(domains.size()), round = index / n;
      const Domain d = domains[index % n];
      const bool thinking = s.thinking_at(round);
      const bool teacher = s.teacher_answers(index % n, round);
      l.expert_answers += teacher;
      const Engine& answers = teacher ? *teacher_engines.at(d) : *engine;
      for (RlSample& x : sample_group(answers, task_at(d, s.seed, index, s.level), thinking, s, uint64_t(index) + 1)) {
        if (!teacher) l.mean_reward += x.reward, ++own;
        samples.push_back(std::move(x));
        sample_domain.push_back(d);
      }
    }
    l.mean_reward = own > 0 ? l.mean_reward / own : std::nan("");
    std::vector<std::vector<float>> teacher_logits(samples.size());
    std::vector<RlSample*> all;
    for (size_t i = 0; i < samples.size(); ++i) {
      teacher_logits[i] = completion_logits(teachers.at(sample_domain[i]), m.c, tr.policy.ropes, samples[i]);
      all.push_back(&samples[i]);
      l.tokens += samples[i].completion_len();
    }
    const size_t V = m.c.vocab_size;
    double kl_sum = 0;
    std::map<std::string, std::pair<double, int>> by_domain;  // KL sum, tokens
    std::vector<TrainSequence> windows;
    for (int b = 0; !replay.empty() && s.replay_weight > 0 && b < s.replay_sequences; ++b)
      windows.push_back(sample_sequence(replay, s.replay_len, s.seed, step, b));
    const auto token_kl = [&](size_t i, int k, std::span<const float> row, std::span<float> drow) {
      const double scale = 1.0 / (double(samples[i].completion_len()) * double(samples.size()));
      const double kl = reverse_kl(row, std::span<const float>(teacher_logits[i]).subspan(size_t(k) * V, V), drow, scale);
      kl_sum += kl;
      auto& [sum, n] = by_domain[domain_name(sample_domain[i])];
      sum += kl, ++n;
      return kl * scale;
    };
    l.replay_loss = policy_step(tr.policy, all, now, token_kl, windows);
    l.kl = kl_sum / std::max(1, l.tokens), l.loss = l.kl;
    for (const auto& [d, sn] : by_domain) l.domain_kl[d] = sn.first / sn.second;
    tr.logged(l);
  }
  return tr.finish();
}

}  // namespace dsv4
