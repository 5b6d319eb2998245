// The post-training domains: every generated task's own solution, rendered by the V4 encoder and
// read back by the V4 parser, passes its checker; wrong answers do not.
#include <gtest/gtest.h>

#include <set>

#include "chat/parse.h"
#include "core/check.h"
#include "posttrain/tasks.h"

namespace dsv4 {
namespace {

chat::ParsedMessage parsed_solution(const Task& t, bool thinking) {
  const RenderedTask r = render_task(t, thinking);
  EXPECT_EQ(r.prompt, render_task_prompt(t, thinking));
  return chat::parse_completion(r.completion, thinking ? chat::ThinkingMode::thinking : chat::ThinkingMode::chat);
}

TEST(Tasks, SolutionsPassTheirCheckersInBothModes) {
  for (Domain d : all_domains())
    for (int i = 0; i < 60; ++i)
      for (bool thinking : {false, true}) {
        const Task t = task_at(d, 7, i);
        const chat::ParsedMessage m = parsed_solution(t, thinking);
        EXPECT_EQ(check_answer(t, m), 1.0) << domain_name(d) << " task " << i << ": " << t.user;
        if (thinking) EXPECT_EQ(m.reasoning_content, t.reasoning);
      }
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
  Task agent;
  for (int i = 0;; ++i)
    if ((agent = task_at(Domain::agentic, 1, i)).call["name"] == "add") break;
  chat::ParsedMessage call;
  call.tool_calls.push_back({"add", agent.call["arguments"].dump()});
  EXPECT_EQ(check_answer(agent, call), 1.0);
  call.tool_calls[0].arguments = R"({"a": 1, "b": 1})";
  EXPECT_EQ(check_answer(agent, call), 0.0);
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
  EXPECT_THROW(parse_domain("poetry"), Error);
  EXPECT_EQ(parse_domain("code"), Domain::code);
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
