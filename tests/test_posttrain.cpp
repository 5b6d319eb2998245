// The post-training domains: every generated task's own solution, rendered by the V4 encoder and
// read back by the V4 parser, passes its checker; wrong answers do not.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <set>

#include "chat/parse.h"
#include "core/check.h"
#include "posttrain/grpo.h"
#include "posttrain/tasks.h"

namespace dsv4 {
namespace {

chat::ParsedMessage parsed_solution(const Task& t, bool thinking) {
  const RenderedTask r = render_task(t, thinking);
  EXPECT_EQ(r.prompt, render_task_prompt(t, thinking));
  return chat::parse_completion(r.completion, thinking ? chat::ThinkingMode::thinking : chat::ThinkingMode::chat);
}

TEST(Tasks, SolutionsPassTheirCheckersInBothModes) {
  for (int level = 1; level <= kMaxLevel; ++level)
    for (Domain d : all_domains())
      for (int i = 0; i < 60; ++i)
        for (bool thinking : {false, true}) {
          const Task t = task_at(d, 7, i, level);
          const chat::ParsedMessage m = parsed_solution(t, thinking);
          EXPECT_EQ(check_answer(t, m), 1.0) << domain_name(d) << " level " << level << " task " << i << ": " << t.user;
          if (thinking) {
            EXPECT_EQ(m.reasoning_content, t.reasoning);
          }
        }
}

// Level 1 is the tasks the recorded runs (docs/post-training) trained and were scored on: the
// levels above must not have moved a draw.
TEST(Tasks, LevelOneIsTheRecordedRunsTasks) {
  EXPECT_EQ(task_at(Domain::math, 1, 0).user, "What is 88 - 85?");
  EXPECT_EQ(task_at(Domain::code, 1, 1).user, "What does this Python program print?\n```python\nxs = [0, 0, 1]\nprint(sum(xs))\n```");
  EXPECT_EQ(task_at(Domain::math, 1, 0, 1).reasoning, task_at(Domain::math, 1, 0).reasoning);
  // A product's worked solution as the recorded data wrote it.
  for (int i = 0;; ++i) {
    const Task t = task_at(Domain::math, 1, i);
    if (t.user.find('*') == std::string::npos) continue;
    const std::regex two_parts(R"(^(\d+) \* (\d) = \d+ and (\d) \* \d = \d+, and \d+ \+ \d+ = (\d+)\.$)");
    const std::string work = t.reasoning.substr(t.reasoning.find(". ") + 2, t.reasoning.find(" So ") - t.reasoning.find(". ") - 2);
    EXPECT_TRUE(std::regex_match(work, two_parts)) << work;
    break;
  }
}

// Each level up, longer operands and lists; every level's computed problems keep the split.
TEST(Tasks, LevelsLengthenOperandsAndLists) {
  const std::regex operands(R"(What is (\d+) [-+*] (\d+)\?)");
  const std::regex list(R"(xs = \[([^\]]*)\])");
  for (int level = 1; level <= kMaxLevel; ++level) {
    std::set<size_t> digits, lengths;
    for (int i = 0; i < 200; ++i) {
      const Task math = task_at(Domain::math, 5, i, level);
      std::smatch m;
      ASSERT_TRUE(std::regex_match(math.user, m, operands)) << math.user;
      digits.insert(m[1].length());
      if (math.user.find('*') == std::string::npos) digits.insert(m[2].length());
      const Task code = task_at(Domain::code, 5, i, level);
      if (std::regex_search(code.user, m, list)) {
        const std::string items = m[1];
        lengths.insert(std::count(items.begin(), items.end(), ',') + 1);
      }
    }
    EXPECT_EQ(digits, std::set<size_t>{size_t(level) + 1}) << "level " << level;
    EXPECT_EQ(lengths, (std::set<size_t>{size_t(2 * level + 1), size_t(2 * level + 2)})) << "level " << level;
  }
  std::set<std::string> sft;
  for (int i = 0; i < 3000; ++i) sft.insert(task_at(Domain::math, 1, i, 2).user);
  for (int i = 0; i < 400; ++i) {
    const std::string rl = task_at(Domain::math, kRlSeeds + 11, i, 2).user, eval = task_at(Domain::math, kEvalSeeds + 3, i, 2).user;
    EXPECT_EQ(sft.count(rl) + sft.count(eval), 0u) << rl << " / " << eval;
  }
  EXPECT_THROW(task_at(Domain::math, 1, 0, 0), Error);
  EXPECT_THROW(task_at(Domain::code, 1, 0, kMaxLevel + 1), Error);
}

// Every equation a worked solution writes ("7 + 5 + 1 = 13", "13 - 8 = 5", "40 * 3 = 120") is
// true: the reasoning teaches arithmetic, so a wrong step would be learned.
TEST(Tasks, WorkedSolutionsWriteOnlyTrueEquations) {
  const std::regex equation(R"(\b(\d+)((?: [-+*] \d+)+) = (\d+)\b)");
  const std::regex term(R"( ([-+*]) (\d+))");
  int checked = 0;
  for (int level = 1; level <= kMaxLevel; ++level)
    for (Domain d : {Domain::math, Domain::code})
      for (int i = 0; i < 300; ++i) {
        const Task t = task_at(d, 5, i, level);
        const std::string text = t.reasoning + " " + t.answer;
        for (std::sregex_iterator e(text.begin(), text.end(), equation), end; e != end; ++e) {
          long long value = std::stoll((*e)[1]);
          const std::string terms = (*e)[2];
          for (std::sregex_iterator k(terms.begin(), terms.end(), term); k != end; ++k) {
            const long long x = std::stoll((*k)[2]);
            const char op = (*k)[1].str()[0];
            value = op == '+' ? value + x : op == '-' ? value - x : value * x;
          }
          EXPECT_EQ(value, std::stoll((*e)[3])) << e->str() << " in: " << text;
          ++checked;
        }
      }
  EXPECT_GT(checked, 3000);
}

TEST(Tasks, WrongAnswersFail) {
  const Task math = task_at(Domain::math, 1, 0);
  chat::ParsedMessage m;
  m.content = "The answer is " + std::to_string(std::stoll(math.expected) + 1) + ".";
  EXPECT_EQ(check_answer(math, m), 0.0);
  m.content = "";
  EXPECT_EQ(check_answer(math, m), 0.0);
  const Task code = task_at(Domain::code, 1, 0);
  m.content = "It prints " + code.expected + ".";  // not quoted: the format is part of the task
  EXPECT_EQ(check_answer(code, m), 0.0);
  m.content = "It prints `" + code.expected + "` or maybe `x`.";  // the last quoted span answers
  EXPECT_EQ(check_answer(code, m), 0.0);
  m.content = "Maybe `x`, no: it prints `" + code.expected + "`.";
  EXPECT_EQ(check_answer(code, m), 1.0);
  Task agent;
  for (int i = 0;; ++i)
    if ((agent = task_at(Domain::agentic, 1, i)).call["name"] == "add") break;
  chat::ParsedMessage call;
  call.tool_calls.push_back({"add", agent.call["arguments"].dump()});
  EXPECT_EQ(check_answer(agent, call), 1.0);
  call.tool_calls[0].arguments = R"({"a": 1, "b": 1})";
  EXPECT_EQ(check_answer(agent, call), 0.0);
  const long long a = agent.call["arguments"]["a"], b = agent.call["arguments"]["b"];
  call.tool_calls[0].arguments = nlohmann::json{{"a", a + b}, {"b", 0}}.dump();  // same sum, not the call asked for
  EXPECT_EQ(check_answer(agent, call), b == 0 ? 1.0 : 0.0);
  call.tool_calls[0] = {"multiply", agent.call["arguments"].dump()};
  EXPECT_EQ(check_answer(agent, call), 0.0);
  call.tool_calls[0] = {"add", "{not json"};
  EXPECT_EQ(check_answer(agent, call), 0.0);
  call.tool_calls.clear();
  call.content = agent.expected;
  EXPECT_EQ(check_answer(agent, call), 0.0);  // answering without the tool is not the task
}

TEST(Tasks, ToolsExecuteAndRejectBadArguments) {
  EXPECT_EQ(execute_tool("add", nlohmann::json{{"a", 2}, {"b", 40}}).value(), "42");
  EXPECT_EQ(execute_tool("multiply", nlohmann::json{{"a", 6}, {"b", 7}}).value(), "42");
  EXPECT_EQ(execute_tool("reverse_text", nlohmann::json{{"text", "abc"}}).value(), "cba");
  EXPECT_EQ(execute_tool("get_weather", nlohmann::json{{"city", "Oslo"}}),
            execute_tool("get_weather", nlohmann::json{{"city", "Oslo"}}));
  EXPECT_FALSE(execute_tool("add", nlohmann::json{{"a", "2"}, {"b", 40}}));
  EXPECT_FALSE(execute_tool("add", nlohmann::json{{"a", 2}}));
  EXPECT_FALSE(execute_tool("add", nlohmann::json{{"a", 2}, {"b", 4}, {"c", 1}}));
  EXPECT_FALSE(execute_tool("delete_files", nlohmann::json::object()));
  EXPECT_FALSE(execute_tool("get_weather", nlohmann::json::array()));
  EXPECT_FALSE(execute_tool("multiply", nlohmann::json{{"a", 9223372036854775807LL}, {"b", 2}}));
  EXPECT_THROW(parse_domain("poetry"), Error);
  EXPECT_EQ(parse_domain("code"), Domain::code);
}

TEST(Tasks, EvaluationTasksDrawWordsTrainingNeverSees) {
  std::set<std::string> train_words, eval_words;
  auto quoted = [](const std::string& s) {
    const size_t a = s.find('"'), b = s.find('"', a + 1);
    return a == std::string::npos ? std::string() : s.substr(a + 1, b - a - 1);
  };
  for (int i = 0; i < 300; ++i) {
    train_words.insert(quoted(task_at(Domain::agentic, 1, i).user));
    eval_words.insert(quoted(task_at(Domain::agentic, kEvalSeeds + 3, i).user));
  }
  train_words.erase(""), eval_words.erase("");
  ASSERT_FALSE(eval_words.empty());
  for (const std::string& w : eval_words) EXPECT_EQ(train_words.count(w), 0u) << w;
}

// Two-digit problems are few (about 24,000): without the split, training data would hold many
// of the evaluation's problems, and GRPO would sample what supervised training showed. The
// three kinds of seed never share a computed problem.
TEST(Tasks, SupervisedGrpoAndEvaluationTasksNeverShareAComputedProblem) {
  std::set<std::string> sft, rl;
  for (uint64_t seed : {1, 2, 3})
    for (int i = 0; i < 4000; ++i)
      for (Domain d : {Domain::math, Domain::code}) sft.insert(task_at(d, seed, i).user);
  int rl_sums = 0;
  for (int i = 0; i < 2000; ++i) {
    const Task math = task_at(Domain::math, kRlSeeds + 11, i), code = task_at(Domain::code, kRlSeeds + 11, i);
    EXPECT_EQ(sft.count(math.user), 0u) << math.user;
    rl.insert(math.user);
    if (code.user.find("sum(") != std::string::npos) {
      EXPECT_EQ(sft.count(code.user), 0u) << code.user;
      rl.insert(code.user);
      ++rl_sums;
    }
  }
  EXPECT_GT(rl_sums, 100);
  int sums = 0;
  for (int i = 0; i < 400; ++i) {
    const Task math = task_at(Domain::math, kEvalSeeds + 3, i), code = task_at(Domain::code, kEvalSeeds + 3, i);
    EXPECT_EQ(sft.count(math.user) + rl.count(math.user), 0u) << math.user;
    if (code.user.find("sum(") != std::string::npos) {
      EXPECT_EQ(sft.count(code.user) + rl.count(code.user), 0u) << code.user;
      ++sums;
    }
  }
  EXPECT_GT(sums, 20);
}

// --mode both: prompts alternate chat, thinking, chat, ... (distillation indexes them by round
// of domains, so each domain meets both modes).
TEST(RlSettings, BothModesAlternateByPrompt) {
  RlSettings s;
  for (int i = 0; i < 6; ++i) EXPECT_FALSE(s.thinking_at(i));
  s.modes = RlSettings::Modes::thinking;
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(s.thinking_at(i));
  s.modes = RlSettings::Modes::both;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(s.thinking_at(i), i % 2 == 1) << i;
}

TEST(Tasks, TasksAreDeterministicAndVaried) {
  std::set<std::string> users;
  for (Domain d : all_domains())
    for (int i = 0; i < 40; ++i) {
      EXPECT_EQ(task_at(d, 3, i).user, task_at(d, 3, i).user);
      users.insert(task_at(d, 3, i).user);
    }
  EXPECT_GT(users.size(), 100u);
}

}  // namespace
}  // namespace dsv4
