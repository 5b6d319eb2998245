// The post-training stages end to end on the default model at the smallest settings that run
// every code path (`dsv4 sft`, `grpo`, `distill`, `average`, `eval`), and weight averaging
// against hand-computed values. The full-size runs are bench/post_training.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "core/check.h"
#include "core/read_file.h"
#include "io/config.h"
#include "posttrain/average.h"
#include "posttrain/grpo.h"
#include "test_util.h"
#include "train/train_state.h"

namespace dsv4 {
namespace {

const std::string kModel = std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny";

ModelConfig tiny_config() { return parse_config(read_file(kModel + "/config.json"), "dsv4-tiny"); }

// Every parameter of w set by f(tensor index, element index).
void fill(TrainWeights& w, const std::function<float(int, size_t)>& f) {
  int t = 0;
  for_each_param(w, [&](const std::string&, std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = f(t, i);
    ++t;
  });
}

TEST(Average, EveryWeightIsTheShareWeightedMean) {
  const ModelConfig c = tiny_config();
  TrainWeights a = zero_weights(c), b = zero_weights(c);
  fill(a, [](int t, size_t i) { return float(t) + 0.5f * float(i % 7); });
  fill(b, [](int, size_t) { return 3.0f; });
  a.layers[3].routing.bias.assign(a.layers[3].routing.bias.size(), 1.0f);
  b.layers[3].routing.bias.assign(b.layers[3].routing.bias.size(), -1.0f);
  const TrainWeights m = average_weights({&a, &b}, {0.25, 0.75});
  int t = 0, checked = 0;
  for_each_param(m, [&](const std::string& name, const std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i, ++checked)
      ASSERT_FLOAT_EQ(v[i], 0.25f * (float(t) + 0.5f * float(i % 7)) + 0.75f * 3.0f) << name << "[" << i << "]";
    ++t;
  });
  EXPECT_GT(checked, 100000);
  for (float x : m.layers[3].routing.bias) EXPECT_FLOAT_EQ(x, 0.25f - 0.75f);
  EXPECT_EQ(m.layers[0].routing.tid2eid, a.layers[0].routing.tid2eid);
}

TEST(Average, RefusesModelsWithDifferentHashRouting) {
  const ModelConfig c = tiny_config();
  TrainWeights a = init_weights(c, 1), b = init_weights(c, 2);
  ASSERT_NE(a.layers[0].routing.tid2eid, b.layers[0].routing.tid2eid);
  try {
    average_weights({&a, &b}, {0.5, 0.5});
    FAIL() << "averaged two hash routings";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0: model 1's hash routing (tid2eid)"), std::string::npos) << e.what();
  }
}

// Sum over a completion's tokens of log p(token) under w.
double completion_logp(const TrainWeights& w, const ModelConfig& c, const RlSample& x) {
  const std::vector<float> logits =
      train_logits(w, c, TrainRopes(c), std::vector<int>(x.ids.begin(), x.ids.end() - 1));
  double sum = 0;
  for (int k = 0; k < x.completion_len(); ++k)
    sum += log_prob(std::span<const float>(logits).subspan(size_t(x.prompt_len - 1 + k) * c.vocab_size, c.vocab_size),
                    x.ids[x.prompt_len + k]);
  return sum;
}

// The direction of a GRPO step through the whole model: the completion with the positive
// advantage becomes more likely, the other less; with no advantage the KL term alone pulls
// the policy back toward the reference.
TEST(Grpo, AnUpdateFollowsTheAdvantagesAndTheKlPullsBack) {
  const ModelConfig c = tiny_config();
  TrainWeights w = init_weights(c, 3);
  const TrainWeights ref = w;
  Policy p(c, w, "adamw");
  RlSample good, bad;
  good.ids = {0, 17, 230, 41, 999, 55, 66, 77, 1}, bad.ids = {0, 17, 230, 41, 999, 88, 99, 11, 1};
  good.prompt_len = bad.prompt_len = 5;
  good.advantage = 1, bad.advantage = -1;
  RlSettings s;
  s.lr = 1e-3f;
  const double good0 = completion_logp(w, c, good), bad0 = completion_logp(w, c, bad);
  RlLog l;
  grpo_update(p, ref, {&good, &bad}, s, l);
  EXPECT_EQ(l.tokens, 8);
  EXPECT_EQ(l.kl, 0.0);  // measured before the step, when the policy is the reference
  const double good1 = completion_logp(w, c, good), bad1 = completion_logp(w, c, bad);
  EXPECT_GT(good1, good0 + 0.1);
  EXPECT_LT(bad1, bad0 - 0.1);

  // A fresh optimizer: Adam's momentum would carry the first step on.
  Policy back(c, w, "adamw");
  good.advantage = bad.advantage = 0;
  s.loss.beta = 1;
  RlLog first, second;
  grpo_update(back, ref, {&good, &bad}, s, first);
  grpo_update(back, ref, {&good, &bad}, s, second);
  EXPECT_GT(first.kl, 0.0);
  EXPECT_LT(second.kl, first.kl);
  EXPECT_LT(std::abs(completion_logp(w, c, good) - good0), std::abs(good1 - good0));
}

// Distillation's expert-answered prompts: each domain gets its share, in both reasoning modes
// (the odd and the even prompts of a domain), whatever the share and the number of domains.
TEST(Distill, EveryDomainGetsItsTeacherShareInBothModes) {
  RlSettings s;
  for (double share : {0.25, 1.0 / 3, 0.5, 2.0 / 3}) {
    s.teacher_share = share;
    for (int domain = 0; domain < 3; ++domain) {
      int answered = 0, odd = 0;
      for (int k = 0; k < 300; ++k)
        if (s.teacher_answers(domain, k)) ++answered, odd += k % 2;
      EXPECT_NEAR(answered / 300.0, share, 0.02) << "share " << share << ", domain " << domain;
      EXPECT_NEAR(double(odd) / answered, 0.5, 0.1) << "share " << share << ", domain " << domain;
    }
  }
  s.teacher_share = 0;
  for (int k = 0; k < 50; ++k) EXPECT_FALSE(s.teacher_answers(1, k));
  s.teacher_share = 1;
  for (int k = 0; k < 50; ++k) EXPECT_TRUE(s.teacher_answers(1, k));
}

TEST(Grpo, LearningRateWarmsUpLinearly) {
  RlSettings s;
  s.lr = 2e-4f, s.warmup = 4;
  EXPECT_FLOAT_EQ(s.at_step(0).lr, 0.5e-4f);
  EXPECT_FLOAT_EQ(s.at_step(2).lr, 1.5e-4f);
  EXPECT_FLOAT_EQ(s.at_step(3).lr, 2e-4f);
  EXPECT_FLOAT_EQ(s.at_step(100).lr, 2e-4f);
  s.warmup = 0;
  EXPECT_FLOAT_EQ(s.at_step(0).lr, 2e-4f);
}

std::string dsv4(const std::string& args) { return test::dsv4_binary() + " " + args + " --threads 1"; }

// One run of each command; every output is a model directory the engine loads (eval runs on it).
TEST(PostTrainingCommands, RunEndToEndAtTheSmallestSize) {
  test::TempDir tmp;
  const std::string data = tmp.file("math.jsonl"), sft = tmp.file("sft"), grpo = tmp.file("grpo"),
                    student = tmp.file("student"), avg = tmp.file("avg");
  auto r = test::run_command(test::dsv4_binary() + " make-task-data --domain math --count 50 --seed 1 -o " + data);
  ASSERT_EQ(r.status, 0) << r.output;
  r = test::run_command(dsv4("sft -m " + kModel + " --data " + data + " --out " + sft +
                             " --steps 2 --batch 1 --seq-len 64"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = test::run_command(dsv4("grpo -m " + sft + " --domain math --out " + grpo +
                             " --steps 1 --prompts 1 --group 2 --max-tokens 8 --mode both --temperature 1"
                             " --max-draws 3 --warmup 4 --eval-every 1 --eval-tasks 3"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("GRPO on math"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("held-out pass@1 after 1 steps (3 tasks, greedy): chat "), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::file_size(grpo + "/rl.png") > 0);
  {
    // Held-out pass@1 before the step and after it, in both modes the run trains; the last row
    // is what `dsv4 eval` measures on the written model.
    std::istringstream log(test::read_file(grpo + "/rl_eval.tsv"));
    std::string header;
    std::getline(log, header);
    EXPECT_EQ(header, "step\ttasks\tchat\tthinking");
    double step = -1, tasks = 0, chat = -1, thinking = -1;
    for (int row = 0; row < 2; ++row) {
      log >> step >> tasks >> chat >> thinking;
      EXPECT_EQ(step, row);
      EXPECT_EQ(tasks, 3);
    }
    EXPECT_TRUE(log >> std::ws && log.eof()) << "two evaluations";
    for (const auto& [mode, pass] : {std::pair{"chat", chat}, std::pair{"thinking", thinking}}) {
      r = test::run_command(dsv4("eval -m " + grpo + " --domain math --tasks 3 --mode " + mode + " --json"));
      ASSERT_EQ(r.status, 0) << r.output;
      const size_t open = r.output.find('{');
      ASSERT_NE(open, std::string::npos) << r.output;
      const nlohmann::json j = nlohmann::json::parse(r.output.substr(open, r.output.find('}', open) + 1 - open));
      EXPECT_NEAR(j["math"].get<double>(), pass, 1e-4) << mode;
    }
  }
  {
    // Groups are drawn until one differs in reward, three at most; the first step's learning
    // rate is a quarter of the default 2e-4 (--warmup 4).
    std::istringstream log(test::read_file(grpo + "/rl_log.tsv"));
    std::string header, step, lr, reward, loss, kl, tokens, groups, kept;
    std::getline(log, header);
    EXPECT_EQ(header, "step\tlr\tmean_reward\tloss\tkl\ttokens\tgroups\tkept");
    log >> step >> lr >> reward >> loss >> kl >> tokens >> groups >> kept;
    EXPECT_FLOAT_EQ(std::stof(lr), 0.5e-4f);
    EXPECT_TRUE((kept == "1" && (groups == "1" || groups == "2" || groups == "3")) || (kept == "0" && groups == "3"))
        << groups << " drawn, " << kept << " kept";
    EXPECT_EQ(tokens == "0", kept == "0") << "only a kept group's completions are learned from";
  }
  r = test::run_command(dsv4("distill -m " + sft + " --expert math=" + grpo + " --expert code=" + sft + " --out " +
                             student + " --steps 1 --prompts 2 --group 1 --max-tokens 8 --mode both --teacher-share 0.5 --replay " +
                             std::string(DSV4_SOURCE_DIR) + "/tests/data/brown-held-sample.txt --replay-len 32"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("distilled 2 experts"), std::string::npos) << r.output;
  for (const std::string& dir : {grpo, student}) {
    const std::string log = test::read_file(dir + "/rl_log.tsv");
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 2) << dir << ": header + one step\n" << log;
  }
  // Distillation logs each domain's KL (both prompts of its one step have a value), the replay
  // text's cross-entropy (a little below the uniform ln 4096 = 8.3 at worst), and how many
  // prompts the experts answered (of the two, the code one: teacher_answers(1, 0)).
  const std::string log = test::read_file(student + "/rl_log.tsv");
  EXPECT_EQ(log.substr(0, log.find('\n')),
            "step\tlr\tmean_reward\tloss\tkl\ttokens\treplay_loss\texpert_answers\tkl_code\tkl_math");
  EXPECT_EQ(std::count(log.begin(), log.end(), '\t'), 18) << log;
  EXPECT_EQ(log.find("\t\t"), std::string::npos) << log;
  {
    std::istringstream row(log.substr(log.find('\n') + 1));
    double step, lr, reward, loss, kl, tokens, replay = -1, answers = -1;
    row >> step >> lr >> reward >> loss >> kl >> tokens >> replay >> answers;
    EXPECT_GT(replay, 1.0) << log;
    EXPECT_LT(replay, 8.0) << log;
    EXPECT_EQ(answers, 1) << log;
    EXPECT_FLOAT_EQ(lr, 2e-4f) << log;  // distill's default, no warm-up
  }
  r = test::run_command(test::dsv4_binary() + " average " + sft + " " + student + ":3 -o " + avg);
  ASSERT_EQ(r.status, 0) << r.output;
  r = test::run_command(dsv4("eval -m " + avg + " --domain math --domain code --tasks 2 --mode thinking --json"));
  ASSERT_EQ(r.status, 0) << r.output;
  const size_t open = r.output.find('{');  // stdout's one line among stderr's progress
  ASSERT_NE(open, std::string::npos) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output.substr(open, r.output.find('}', open) + 1 - open));
  EXPECT_TRUE(j.contains("math") && j.contains("code")) << r.output;
  // Without --json: each pass rate with its binomial standard error, sqrt(p (1 - p) / n).
  r = test::run_command(dsv4("eval -m " + avg + " --domain math --tasks 4 --mode chat"));
  ASSERT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(math +pass@1 (\d\.\d{3}) \+- (\d\.\d{3}) \((\d) / 4\))")))
      << r.output;
  const double p = std::stod(m[3]) / 4;
  EXPECT_NEAR(std::stod(m[1]), p, 5e-4);
  EXPECT_NEAR(std::stod(m[2]), std::sqrt(p * (1 - p) / 4), 5e-4);
}

// Bad input to average (models that do not share a base), to grpo's settings and to the task
// seeds (each kind of seed its own tasks, tasks.h): refused, named.
TEST(PostTrainingCommands, RejectBadInput) {
  test::TempDir tmp;
  // The default model with one config value changed (its weights still load).
  const std::string other = tmp.file("other");
  std::filesystem::create_directories(other);
  std::filesystem::create_symlink(kModel + "/model.safetensors", other + "/model.safetensors");
  std::filesystem::copy_file(kModel + "/tokenizer.json", other + "/tokenizer.json");
  std::string config = test::read_file(kModel + "/config.json");
  const std::string from = "\"hc_eps\": 1e-06", to = "\"hc_eps\": 2e-06";
  const size_t at = config.find(from);
  ASSERT_NE(at, std::string::npos);
  test::write_file(other + "/config.json", config.replace(at, from.size(), to));
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"average " + kModel + " -o " + tmp.file("a"), "models"},
      {"average " + kModel + " " + kModel + ":0 -o " + tmp.file("b"), "the share after ':' must be positive"},
      {"average " + kModel + " " + tmp.file("missing") + " -o " + tmp.file("c"), tmp.file("missing")},
      {"average " + kModel + " " + other + " -o " + tmp.file("d"), other + ": its config.json differs"},
      {"grpo -m " + kModel + " --domain math --out " + tmp.file("e") + " --prompts 4 --max-draws 2",
       "--max-draws (2) must be at least --prompts (4)"},
      {"grpo -m " + kModel + " --domain math --out " + tmp.file("f") + " --warmup -1", "--warmup must be >= 0"},
      {"grpo -m " + kModel + " --domain math --out " + tmp.file("o") + " --eval-every -2", "--eval-every must be >= 0, got -2"},
      {"grpo -m " + kModel + " --domain math --out " + tmp.file("p") + " --eval-tasks 0",
       "--eval-tasks must be at least 1, got 0"},
      {"grpo -m " + kModel + " --domain math --out " + tmp.file("g") + " --seed 11",
       "--seed must be from 500000 to 999999 (smaller seeds are supervised data's tasks"},
      {"make-task-data --domain math -o " + tmp.file("h.jsonl") + " --seed 500011", "--seed must be below 500000"},
      {"eval -m " + kModel + " --task-seed 7", "--task-seed must be at least 1000000"},
      {"eval -m " + kModel + " --level 4", "--level: Value 4 not in range 1 to 3"},
      {"make-task-data --domain code -o " + tmp.file("m.jsonl") + " --level 0", "--level: Value 0 not in range 1 to 3"},
      {"grpo -m " + kModel + " --domain math --out " + tmp.file("n") + " --level 9", "--level: Value 9 not in range"},
      {"distill -m " + kModel + " --expert math=" + kModel + " --out " + tmp.file("i") + " --replay /nonexistent.txt",
       "/nonexistent.txt"},
      {"distill -m " + kModel + " --expert math=" + kModel + " --out " + tmp.file("j") + " --replay-len 1",
       "--replay-len must be at least 2, got 1"},
      {"distill -m " + kModel + " --expert math=" + kModel + " --out " + tmp.file("l") + " --replay " +
           std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny/config.json --replay-len 100000",
       "fewer than a --replay-len window (100000)"},
      {"distill -m " + kModel + " --expert math=" + kModel + " --out " + tmp.file("k") + " --teacher-share 1.5",
       "--teacher-share must be in [0, 1], got 1.5"},
  };
  for (const Case& c : cases) {
    const auto r = test::run_command(test::dsv4_binary() + " " + c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << "\n" << r.output;
  }
}

}  // namespace
}  // namespace dsv4
