// The chat layer (src/chat) against the official DeepSeek-V4 encoder (encoding/encoding_dsv4.py):
// the four official prompts byte for byte and the parse results its tests assert; one case per
// encoder feature and parser rule, with expectations read off the Python (and checked against it
// when written); the Python-compatible JSON writer; the streaming parser against the one-shot
// parser at every split point, byte by byte and at random splits; every truncation; seeded fuzz
// (random bytes, random mixtures of markup) that must never crash either parser or leak markup
// into content; and the render / parse commands, including bad input.
// Metric everywhere: exact equality of strings and fields; there is no tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "chat/encode.h"
#include "chat/parse.h"
#include "chat/python_json.h"
#include "chat/stream.h"
#include "core/check.h"
#include "core/json_input.h"
#include "test_util.h"

namespace dsv4::chat {
namespace {

using json = nlohmann::ordered_json;

const std::string BOS(bos_token), EOS(eos_token);
const std::string TC_OPEN = "\n\n<｜DSML｜tool_calls>\n", TC_CLOSE = "</｜DSML｜tool_calls>";

std::string official_file(const std::string& name) {
  return test::read_file(test::shared_dir() + "/chat/official/" + name);
}

// The official test's input: case 1 moves the top-level tools onto messages[0].
json official_messages(int n) {
  json j = json::parse(official_file("test_input_" + std::to_string(n) + ".json"));
  if (n != 1) return j;
  json messages = j["messages"];
  messages[0]["tools"] = j["tools"];
  return messages;
}

std::string encode(const json& messages, ThinkingMode mode, bool drop_thinking = true,
                   ReasoningEffort effort = ReasoningEffort::none) {
  EncodeOptions o;
  o.thinking_mode = mode;
  o.drop_thinking = drop_thinking;
  o.reasoning_effort = effort;
  return encode_messages(messages, o);
}

// Runs f and returns the dsv4::Error message it throws ("" and a test failure when none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no dsv4::Error thrown";
  return "";
}

#define EXPECT_ERROR(expr, fragment)                                              \
  do {                                                                            \
    const std::string msg_ = error_of([&] { (void)(expr); });                     \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << "message: " << msg_;     \
  } while (0)

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// Markup that must never reach reasoning or content from the streaming parser.
bool has_markup(std::string_view s) {
  for (const std::string_view t : {think_start, think_end, dsml_token, eos_token, bos_token})
    if (s.find(t) != std::string_view::npos) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Python-compatible JSON

TEST(PythonJson, FloatsAsPythonRepr) {
  // Expected strings are Python 3.11's json.dumps of the same doubles.
  const std::vector<std::pair<double, std::string>> cases = {
      {0.1, "0.1"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {1e-5, "1e-05"},
      {1e-4, "0.0001"},
      {-0.0, "-0.0"},
      {0.0, "0.0"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {0.30000000000000004, "0.30000000000000004"},
      {100.0, "100.0"},
      {12345678901234567.0, "1.2345678901234568e+16"},
      {-2.5e-7, "-2.5e-07"},
      {123456789.123, "123456789.123"},
      {1e100, "1e+100"},
      {9007199254740992.0, "9007199254740992.0"},
      {std::numeric_limits<double>::quiet_NaN(), "NaN"},
      {std::numeric_limits<double>::infinity(), "Infinity"},
      {-std::numeric_limits<double>::infinity(), "-Infinity"},
  };
  for (const auto& [d, want] : cases) EXPECT_EQ(python_float_repr(d), want) << d;
}

TEST(PythonJson, SeparatorsOrderEscapes) {
  const json v = json::parse(
      R"({"b": [1, -2, 18446744073709551615, {}, [], null, true, 2.5], "a": "q\"\\\n\r\t\b\f\u0001\u001f\u007f é 中 💡"})");
  EXPECT_EQ(to_python_json(v),
            R"({"b": [1, -2, 18446744073709551615, {}, [], null, true, 2.5], "a": "q\"\\\n\r\t\b\f\u0001\u001f)"
            "\x7f é 中 💡\"}");
}

// ---------------------------------------------------------------------------------------------
// Encoder: the official cases

TEST(Encode, OfficialCasesByteExact) {
  for (int n = 1; n <= 4; ++n) {
    const ThinkingMode mode = n == 4 ? ThinkingMode::chat : ThinkingMode::thinking;
    EXPECT_EQ(encode(official_messages(n), mode), official_file("test_output_" + std::to_string(n) + ".txt"))
        << "case " << n;
  }
}

TEST(Encode, OfficialCase1ThroughAttachTools) {
  // An OpenAI request carries tools beside the messages; the first message is a system one.
  const json j = json::parse(official_file("test_input_1.json"));
  EXPECT_EQ(encode(attach_tools(j["messages"], j["tools"]), ThinkingMode::thinking), official_file("test_output_1.txt"));
}

// ---------------------------------------------------------------------------------------------
// Encoder: one case per feature; expected prompts as the official encoder writes them.

TEST(Encode, ChatModeClosesThinking) {
  const json m = json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}])");
  EXPECT_EQ(encode(m, ThinkingMode::chat), BOS + "S<｜User｜>hi<｜Assistant｜></think>");
  EXPECT_EQ(encode(m, ThinkingMode::thinking), BOS + "S<｜User｜>hi<｜Assistant｜><think>");
  EncodeOptions o;
  o.add_bos = false;
  EXPECT_EQ(encode_messages(m, o), "S<｜User｜>hi<｜Assistant｜><think>");
}

TEST(Encode, KeepThinkingKeepsEarlierReasoning) {
  EXPECT_EQ(encode(official_messages(2), ThinkingMode::thinking, /*drop_thinking=*/false),
            BOS + "You are a helpful assistant.<｜User｜>Hello<｜Assistant｜><think>The user said hello, I should greet "
                  "back.</think>Hi there! How can I help you?" + EOS +
                "<｜User｜>What is the capital of France?<｜Assistant｜><think>The user asks about the capital of "
                "France. It is Paris.</think>The capital of France is Paris." + EOS);
}

TEST(Encode, ReasoningEffort) {
  const json m = json::parse(R"([{"role": "user", "content": "hi"}])");
  const std::string preamble =
      "Reasoning Effort: Absolute maximum with no shortcuts permitted.\nYou MUST be very thorough in your thinking and "
      "comprehensively decompose the problem to resolve the root cause, rigorously stress-testing your logic against "
      "all potential paths, edge cases, and adversarial scenarios.\nExplicitly write out your entire deliberation "
      "process, documenting every intermediate step, considered alternative, and rejected hypothesis to ensure "
      "absolutely no assumption is left unchecked.\n\n";
  EXPECT_EQ(encode(m, ThinkingMode::thinking, true, ReasoningEffort::max),
            BOS + preamble + "<｜User｜>hi<｜Assistant｜><think>");
  // Only thinking mode gets the preamble; "high" changes nothing.
  EXPECT_EQ(encode(m, ThinkingMode::chat, true, ReasoningEffort::max), BOS + "<｜User｜>hi<｜Assistant｜></think>");
  EXPECT_EQ(encode(m, ThinkingMode::thinking, true, ReasoningEffort::high), encode(m, ThinkingMode::thinking));
  EXPECT_EQ(parse_reasoning_effort("max"), ReasoningEffort::max);
  // "low" is a V4-Flash-0731 level (see Encode0731): the April encoder refuses it.
  EXPECT_EQ(parse_reasoning_effort("low"), ReasoningEffort::low);
  EXPECT_ERROR(encode(m, ThinkingMode::thinking, true, ReasoningEffort::low), "'low' is a V4-Flash-0731 level");
  EXPECT_ERROR(parse_reasoning_effort("medium"), "'medium'");
  EXPECT_ERROR(parse_thinking_mode("fast"), "'fast'");
}

TEST(Encode, ResponseFormatOnSystemAndDeveloper) {
  const json m = json::parse(R"([{"role": "system", "content": "S", "response_format": {"type": "json_object", "x": 1.5}},
      {"role": "developer", "content": "D", "response_format": {"k": [1, "é"]}}])");
  const std::string head = "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";
  EXPECT_EQ(encode(m, ThinkingMode::chat),
            BOS + "S" + head + R"({"type": "json_object", "x": 1.5})" + "<｜User｜>D" + head + R"({"k": [1, "é"]})" +
                "<｜Assistant｜></think>");
  // An empty response format (falsy in Python) adds nothing.
  EXPECT_EQ(encode(json::parse(R"([{"role": "system", "content": "S", "response_format": ""}])"), ThinkingMode::chat),
            BOS + "S");
}

TEST(Encode, ToolCallsArgumentsAndResultsInCallOrder) {
  // No message has tools, so thinking is dropped: the first assistant turn precedes the last
  // user turn (the merged tool results + "more").
  const json m = json::parse(R"([
    {"role": "user", "content": "q"},
    {"role": "assistant", "reasoning_content": "R", "content": "", "tool_calls": [
      {"id": "a", "type": "function", "function": {"name": "f",
        "arguments": "{\"x\": 1.5, \"y\": [1, \"a\"], \"z\": null, \"w\": true, \"s\": \"é\\n\"}"}},
      {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
      {"type": "function", "function": {"id": "c", "name": "h", "arguments": "not json"}}]},
    {"role": "tool", "tool_call_id": "c", "content": "C"},
    {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "B1"}, {"type": "image_url", "image_url": {}},
                                                      {"type": "text", "text": "B2"}]},
    {"role": "tool", "tool_call_id": "a", "content": "A"},
    {"role": "user", "content": "more"}])");
  const std::string want =
      BOS + "<｜User｜>q<｜Assistant｜></think>" + TC_OPEN +
      "<｜DSML｜invoke name=\"f\">\n"
      "<｜DSML｜parameter name=\"x\" string=\"false\">1.5</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"y\" string=\"false\">[1, \"a\"]</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"z\" string=\"false\">null</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"w\" string=\"false\">true</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"s\" string=\"true\">é\n</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"g\">\n\n</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"h\">\n"
      "<｜DSML｜parameter name=\"arguments\" string=\"true\">not json</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n" +
      TC_CLOSE + EOS +
      "<｜User｜><tool_result>A</tool_result>\n\n<tool_result>B1\n\n[Unsupported image_url]\n\nB2</tool_result>\n\n"
      "<tool_result>C</tool_result>\n\nmore<｜Assistant｜><think>";
  EXPECT_EQ(encode(m, ThinkingMode::thinking), want);
}

TEST(Encode, Tasks) {
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u", "task": "query"}])"), ThinkingMode::thinking),
            BOS + "<｜User｜>u<｜query｜>");
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u", "task": "read_url"}])"), ThinkingMode::chat),
            BOS + "<｜User｜>u<｜read_url｜>");
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u", "task": "action"}])"), ThinkingMode::thinking),
            BOS + "<｜User｜>u<｜Assistant｜><think><｜action｜>");
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a", "task": "title"}])"),
                   ThinkingMode::chat),
            BOS + "<｜User｜>u<｜Assistant｜></think>a" + EOS + "<｜title｜>");
  // The answer to a task has no thinking block even in thinking mode.
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u", "task": "authority"}, {"role": "assistant", "content": "high"}])"),
                   ThinkingMode::thinking),
            BOS + "<｜User｜>u<｜authority｜>high" + EOS);
}

TEST(Encode, AssistantWithoutEos) {
  const json m = json::parse(
      R"([{"role": "user", "content": "u"}, {"role": "assistant", "reasoning_content": "r", "content": "part", "wo_eos": true}])");
  EXPECT_EQ(encode(m, ThinkingMode::thinking), BOS + "<｜User｜>u<｜Assistant｜><think>r</think>part");
}

TEST(Encode, DeveloperAndReminders) {
  // A developer turn before the last user turn is dropped with the old reasoning.
  EXPECT_EQ(encode(json::parse(R"([{"role": "developer", "content": "D1"}, {"role": "assistant", "reasoning_content": "r1", "content": "a1"},
                                   {"role": "user", "content": "u2"}])"),
                   ThinkingMode::thinking),
            BOS + "a1" + EOS + "<｜User｜>u2<｜Assistant｜><think>");
  // A reminder between the user turn and the answer comes after the assistant prefix.
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u"}, {"role": "latest_reminder", "content": "L"},
                                   {"role": "assistant", "content": "a"}])"),
                   ThinkingMode::chat),
            BOS + "<｜User｜>u<｜Assistant｜></think><｜latest_reminder｜>La" + EOS);
  // Consecutive user turns share one turn, as merged by the official encoder.
  EXPECT_EQ(encode(json::parse(R"([{"role": "user", "content": "u1"}, {"role": "user", "content": "u2"}])"), ThinkingMode::chat),
            BOS + "<｜User｜>u1\n\nu2<｜Assistant｜></think>");
}

TEST(Encode, ContextIsNotRendered) {
  const json ctx = json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
                                   {"role": "assistant", "content": "a1"}])");
  const json more = json::parse(R"([{"role": "user", "content": "u2"}])");
  EncodeOptions o;
  o.thinking_mode = ThinkingMode::chat;
  EXPECT_EQ(encode_messages(more, o, ctx), "<｜User｜>u2<｜Assistant｜></think>");
  json all = ctx;
  all.push_back(more[0]);
  EXPECT_EQ(encode_messages(ctx, o) + encode_messages(more, o, ctx), encode_messages(all, o));
  // Tool results continuing a context are sorted by the calls in the context.
  const json calls = json::parse(R"([{"role": "system", "content": "S", "tools": [{"type": "function", "function": {"name": "f"}}]},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                                                        {"id": "2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}])");
  const json results = json::parse(R"([{"role": "tool", "tool_call_id": "2", "content": "two"}, {"role": "tool", "tool_call_id": "1", "content": "one"}])");
  o.thinking_mode = ThinkingMode::thinking;
  EXPECT_EQ(encode_messages(results, o, calls),
            "<｜User｜><tool_result>one</tool_result>\n\n<tool_result>two</tool_result><｜Assistant｜><think>");
}

TEST(Encode, AttachTools) {
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])");
  const json user = json::parse(R"([{"role": "user", "content": "u"}])");
  const json with = attach_tools(user, tools);
  ASSERT_EQ(with.size(), 2u);
  EXPECT_EQ(with[0]["role"], "system");
  EXPECT_EQ(with[0]["content"], "");
  EXPECT_EQ(encode(with, ThinkingMode::chat),
            BOS + "\n\n" + render_tools(tools) + "<｜User｜>u<｜Assistant｜></think>");
  EXPECT_NE(render_tools(tools).find("### Available Tool Schemas\n\n{\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}\n\n"
                                     "You MUST strictly follow"),
            std::string::npos);
  EXPECT_EQ(attach_tools(user, json::array()), user);
  EXPECT_EQ(attach_tools(user, json()), user);
  EXPECT_ERROR(attach_tools(with, tools), "both beside the messages and on the system message");
  EXPECT_ERROR(attach_tools(user, json::parse(R"([{"name": "f"}])")), "tools[0]");
}

TEST(Encode, BadInputNamesTheProblem) {
  const auto bad = [](const char* messages) { return encode(json::parse(messages), ThinkingMode::thinking); };
  EXPECT_ERROR(bad(R"({"role": "user"})"), "messages must be an array");
  EXPECT_ERROR(bad(R"(["hi"])"), "messages[0] must be an object");
  EXPECT_ERROR(bad(R"([{"content": "x"}])"), "messages[0] has no string \"role\"");
  EXPECT_ERROR(bad(R"([{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}])"),
               "messages[1] has unknown role 'robot'");
  EXPECT_ERROR(bad(R"([{"role": "user", "content": 5}])"), "messages[0].content must be a string");
  EXPECT_ERROR(bad(R"([{"role": "user", "content": [{"type": "text", "text": "x"}]}])"), "messages[0].content");
  EXPECT_ERROR(bad(R"([{"role": "system", "content": {"a": 1}}])"), "messages[0].content must be a string or null");
  EXPECT_ERROR(bad(R"([{"role": "developer", "content": ""}])"), "developer) needs a non-empty string content");
  EXPECT_ERROR(bad(R"([{"role": "latest_reminder"}])"), "latest_reminder) needs a string content");
  EXPECT_ERROR(bad(R"([{"role": "tool", "content": {"a": 1}}])"), "messages[0].content must be a string or a list");
  EXPECT_ERROR(bad(R"([{"role": "tool", "content": null}])"), "messages[0].content must be a string or a list");
  EXPECT_ERROR(bad(R"([{"role": "user", "content": "u", "task": "summarize"}])"), "messages[0].task must be one of");
  EXPECT_ERROR(bad(R"([{"role": "system", "tools": {"name": "f"}}])"), "messages[0].tools must be an array");
  EXPECT_ERROR(bad(R"([{"role": "system", "tools": [{"name": "f"}]}])"), "messages[0].tools[0] must be an OpenAI tool");
  EXPECT_ERROR(bad(R"([{"role": "assistant", "tool_calls": {"f": 1}}])"), "messages[0].tool_calls must be an array");
  EXPECT_ERROR(bad(R"([{"role": "assistant", "tool_calls": [{"name": "f"}]}])"), "tool_calls[0] has no \"function\"");
  EXPECT_ERROR(bad(R"([{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}])"),
               "tool_calls[0].function.name must be a string");
  EXPECT_ERROR(bad(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}])"),
               "tool_calls[0].function.arguments must be a JSON string");
  EXPECT_ERROR(bad(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1, 2]"}}]}])"),
               "tool_calls[0].function.arguments must encode a JSON object");
  EXPECT_ERROR(bad(R"([{"role": "assistant", "reasoning_content": 1}])"), "reasoning_content must be a string or null");
  EncodeOptions o;
  EXPECT_ERROR(encode_messages(json::array(), o, json::parse(R"([{"role": "x"}])")), "context[0] has unknown role 'x'");
}

// ---------------------------------------------------------------------------------------------
// One-shot parser

// The assistant turns of an official prompt: from each "<｜Assistant｜><think>" to the next user
// turn (or the end), as the official test slices them.
std::vector<std::string> assistant_turns(const std::string& prompt) {
  const std::string marker = "<｜Assistant｜><think>";
  std::vector<std::string> turns;
  for (size_t p = prompt.find(marker); p != std::string::npos; p = prompt.find(marker, p + 1)) {
    const size_t start = p + marker.size(), end = prompt.find("<｜User｜>", start);
    turns.push_back(prompt.substr(start, end == std::string::npos ? std::string::npos : end - start));
  }
  return turns;
}

TEST(Parse, OfficialAssertions) {
  const std::vector<std::string> turns1 = assistant_turns(official_file("test_output_1.txt"));
  ASSERT_EQ(turns1.size(), 2u);
  const ParsedMessage call = parse_completion(turns1[0], ThinkingMode::thinking);
  EXPECT_EQ(call.reasoning_content, "The user wants to know the weather in Beijing. I should use the get_weather tool.");
  EXPECT_EQ(call.content, "");
  ASSERT_EQ(call.tool_calls.size(), 1u);
  EXPECT_EQ(call.tool_calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(call.tool_calls[0].arguments), json::parse(R"({"location": "Beijing", "unit": "celsius"})"));
  EXPECT_EQ(call.tool_calls[0].arguments, R"({"location": "Beijing", "unit": "celsius"})");
  const ParsedMessage final1 = parse_completion(turns1[1], ThinkingMode::thinking);
  EXPECT_EQ(final1.reasoning_content, "Got the weather data. Let me format a nice response.");
  EXPECT_NE(final1.content.find("22°C"), std::string::npos);
  EXPECT_TRUE(final1.tool_calls.empty());

  const std::vector<std::string> turns2 = assistant_turns(official_file("test_output_2.txt"));
  const ParsedMessage final2 = parse_completion(turns2.back(), ThinkingMode::thinking);
  EXPECT_EQ(final2.reasoning_content, "The user asks about the capital of France. It is Paris.");
  EXPECT_EQ(final2.content, "The capital of France is Paris.");
  EXPECT_TRUE(final2.tool_calls.empty());

  const json j = final2.to_json();
  EXPECT_EQ(j.dump(), R"({"role":"assistant","content":"The capital of France is Paris.","reasoning_content":"The user asks about the capital of France. It is Paris.","tool_calls":[]})");
  EXPECT_EQ(call.to_json()["tool_calls"][0].dump(),
            R"({"type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Beijing\", \"unit\": \"celsius\"}"}})");
}

const std::string kToolBlock = TC_OPEN +
                               "<｜DSML｜invoke name=\"get_weather\">\n"
                               "<｜DSML｜parameter name=\"location\" string=\"true\">Bei \"jing\"\n中</｜DSML｜parameter>\n"
                               "<｜DSML｜parameter name=\"days\" string=\"false\">5</｜DSML｜parameter>\n"
                               "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"a\": [1, 2.50]}</｜DSML｜parameter>\n"
                               "</｜DSML｜invoke>\n"
                               "<｜DSML｜invoke name=\"noargs\">\n\n</｜DSML｜invoke>\n" +
                               TC_CLOSE;

TEST(Parse, ToolCalls) {
  const ParsedMessage m = parse_completion("think</think>" + kToolBlock + EOS, ThinkingMode::thinking);
  EXPECT_EQ(m.reasoning_content, "think");
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 2u);
  // string="true" values become JSON strings; string="false" values are inserted as written.
  EXPECT_EQ(m.tool_calls[0], (ToolCall{"get_weather", R"({"location": "Bei \"jing\"\n中", "days": 5, "opts": {"a": [1, 2.50]}})"}));
  EXPECT_EQ(m.tool_calls[1], (ToolCall{"noargs", "{}"}));
  // Content before the block; the end-of-sentence token may be missing after a block.
  const ParsedMessage c = parse_completion("lead" + kToolBlock, ThinkingMode::chat);
  EXPECT_EQ(c.content, "lead");
  EXPECT_EQ(c.tool_calls, m.tool_calls);
}

TEST(Parse, OfficialRegexCorners) {
  const std::string head = TC_OPEN + "<｜DSML｜invoke name=\"f\">\n";
  // A value may end in "<\n" before the closing tag ($ matches before a final newline).
  EXPECT_EQ(parse_completion(head + "<｜DSML｜parameter name=\"a\" string=\"true\">v<\n/｜DSML｜parameter>\n</｜DSML｜invoke>\n" +
                                 TC_CLOSE + EOS, ThinkingMode::chat)
                .tool_calls[0].arguments,
            R"({"a": "v"})");
  // Unicode whitespace before name= is allowed (Python's \s).
  EXPECT_EQ(parse_completion(TC_OPEN + "<｜DSML｜invoke \u3000\t name=\"f\">\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS, ThinkingMode::chat)
                .tool_calls[0].name,
            "f");
  // The official parser lets these truncated blocks through.
  const ParsedMessage open_only = parse_completion("Hi\n\n<｜DSML｜tool_calls", ThinkingMode::chat);
  EXPECT_EQ(open_only.content, "Hi");
  EXPECT_TRUE(open_only.tool_calls.empty());
  EXPECT_EQ(parse_completion(head + "</｜DSML｜invoke", ThinkingMode::chat).tool_calls, (std::vector<ToolCall>{{"f", "{}"}}));
  EXPECT_EQ(parse_completion(head, ThinkingMode::chat).tool_calls, (std::vector<ToolCall>{{"f", "{}"}}));
  EXPECT_TRUE(parse_completion(TC_OPEN + TC_CLOSE + EOS, ThinkingMode::chat).tool_calls.empty());
}

TEST(Parse, MalformedTextNamesTheProblem) {
  const std::string head = TC_OPEN + "<｜DSML｜invoke name=\"f\">\n";
  const auto chat = [](const std::string& t) { return parse_completion(t, ThinkingMode::chat); };
  EXPECT_ERROR(chat("Hello"), "missing the end-of-sentence token");
  EXPECT_ERROR(parse_completion("abc" + EOS, ThinkingMode::thinking), "missing </think>");
  EXPECT_ERROR(parse_completion("abc" + kToolBlock + EOS, ThinkingMode::thinking), "missing </think> before the tool-call block");
  EXPECT_ERROR(chat("a" + EOS + "b"), "unexpected content after the end of the message");
  EXPECT_ERROR(chat("a<think>b" + EOS), "unexpected special token '<think>' in content");
  EXPECT_ERROR(chat("</think>b" + EOS), "unexpected special token '</think>' in content");
  EXPECT_ERROR(chat("a<｜DSML｜invoke" + EOS), "unexpected special token '｜DSML｜' in content");
  EXPECT_ERROR(parse_completion("<think>r</think>c" + EOS, ThinkingMode::thinking), "'<think>' in reasoning content");
  EXPECT_ERROR(chat(head + "<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>\n"
                           "<｜DSML｜parameter name=\"a\" string=\"true\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS),
               "duplicate parameter name 'a'");
  EXPECT_ERROR(chat(head + "<｜DSML｜parameter name=\"a\" string=\"yes\">1</｜DSML｜parameter>\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS),
               "parameter format error in tool call 'f'");
  EXPECT_ERROR(chat(head + "<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter></｜DSML｜invoke>\n" + TC_CLOSE + EOS),
               "expected '>\\n' after </｜DSML｜parameter");
  EXPECT_ERROR(chat("\n\n<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS),
               "tool call format error: expected '>\\n' but got '>'");
  EXPECT_ERROR(chat(TC_OPEN + "<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS), "tool name format error");
  EXPECT_ERROR(chat(TC_OPEN + TC_CLOSE + "x" + EOS), "unexpected content after the tool calls");
  EXPECT_ERROR(chat(head + "</｜DSML｜invoke>\n"), "tool call block ends without </｜DSML｜tool_calls>");
}

// ---------------------------------------------------------------------------------------------
// Streaming parser

struct StreamResult {
  ParsedMessage from_deltas, message;
  bool truncated = false;
  std::string error;
  std::string problem;  // a broken delta invariant; empty when all held
};

// Feeds text cut at the given ascending offsets, then finish(), adding up the deltas and
// checking on the way: a call begins once, with its name, before its arguments; arguments only
// go to the newest call; no markup in reasoning or content deltas; no exception at all.
// With whole_calls, text may hold markup (a broken block's raw characters), and every call must
// come whole in one delta.
StreamResult run_stream(std::string_view text, ThinkingMode mode, const std::vector<size_t>& cuts,
                        bool whole_calls = false) {
  StreamResult r;
  StreamParser p(mode, whole_calls);
  const auto take = [&](const StreamDelta& d) {
    r.from_deltas.reasoning_content += d.reasoning_content;
    r.from_deltas.content += d.content;
    if (!whole_calls && (has_markup(d.reasoning_content) || has_markup(d.content))) r.problem = "markup in a text delta";
    const size_t first_new = r.from_deltas.tool_calls.size();
    for (const ToolCallDelta& t : d.tool_calls) {
      std::vector<ToolCall>& calls = r.from_deltas.tool_calls;
      if (whole_calls && t.index < first_new) r.problem = "a call came in pieces";
      if (t.begin) {
        if (t.index != calls.size()) r.problem = "a call began out of order";
        calls.push_back({t.name, ""});
      } else if (calls.empty() || t.index != calls.size() - 1) {
        r.problem = "arguments for a call that is not the newest";
        continue;
      }
      calls.back().arguments += t.arguments;
    }
  };
  try {
    size_t prev = 0;
    for (const size_t c : cuts) {
      take(p.feed(text.substr(prev, c - prev)));
      prev = c;
    }
    take(p.feed(text.substr(prev)));
    take(p.finish());
  } catch (const std::exception& e) {
    r.problem = std::string("threw: ") + e.what();
  }
  r.message = p.message();
  r.truncated = p.truncated();
  r.error = p.error();
  if (r.problem.empty() && !(r.message == r.from_deltas)) r.problem = "message() differs from the sum of the deltas";
  if (r.problem.empty() && !whole_calls && (has_markup(r.message.content) || has_markup(r.message.reasoning_content)))
    r.problem = "markup in the accumulated text";
  return r;
}

std::vector<size_t> every_byte(size_t n) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < n; ++i) cuts.push_back(i);
  return cuts;
}

std::vector<size_t> random_cuts(size_t n, std::mt19937& rng) {
  std::vector<size_t> cuts;
  for (size_t i = 1 + rng() % 6; i < n; i += 1 + rng() % 6) cuts.push_back(i);
  return cuts;
}

// The stream over text equals parse_completion(text) however the text is cut: at each single
// split point, byte by byte, and at a few random chunkings.
void expect_stream_matches(const std::string& text, ThinkingMode mode, std::mt19937& rng) {
  const ParsedMessage want = parse_completion(text, mode);
  std::vector<std::vector<size_t>> splits = {every_byte(text.size()), random_cuts(text.size(), rng),
                                             random_cuts(text.size(), rng)};
  for (size_t cut = 0; cut <= text.size(); ++cut) splits.push_back({cut});
  for (const auto& cuts : splits) {
    const StreamResult r = run_stream(text, mode, cuts);
    const std::string where = "cut into " + std::to_string(cuts.size() + 1) + " pieces" +
                              (cuts.size() == 1 ? " at " + std::to_string(cuts[0]) : "") + ": " + text;
    ASSERT_EQ(r.problem, "") << where;
    ASSERT_EQ(r.error, "") << where;
    ASSERT_EQ(r.message, want) << where;
    ASSERT_EQ(r.truncated, !text.ends_with(EOS)) << where;
  }
  // Fed byte by byte, each text delta is whole UTF-8 characters when the text is.
  if (valid_utf8(text)) {
    StreamParser p(mode);
    for (size_t i = 0; i < text.size(); ++i) {
      const StreamDelta d = p.feed(text.substr(i, 1));
      ASSERT_TRUE(valid_utf8(d.content) && valid_utf8(d.reasoning_content)) << "byte " << i << ": " << text;
    }
  }
}

// What a finish() after any prefix of a valid completion must give: no error, truncated unless
// the whole text was seen, reasoning and content prefixes of the full ones, the calls so far.
void expect_truncations_sensible(const std::string& text, ThinkingMode mode, std::mt19937& rng) {
  const ParsedMessage full = parse_completion(text, mode);
  for (size_t n = 0; n <= text.size(); ++n) {
    const std::string prefix = text.substr(0, n);
    const StreamResult r = run_stream(prefix, mode, random_cuts(n, rng));
    const std::string where = "prefix of " + std::to_string(n) + " bytes: " + prefix;
    ASSERT_EQ(r.problem, "") << where;
    ASSERT_EQ(r.error, "") << where;
    ASSERT_EQ(r.truncated, !prefix.ends_with(EOS)) << where;
    ASSERT_TRUE(full.reasoning_content.starts_with(r.message.reasoning_content)) << where;
    ASSERT_TRUE(full.content.starts_with(r.message.content)) << where;
    const std::vector<ToolCall>& calls = r.message.tool_calls;
    ASSERT_LE(calls.size(), full.tool_calls.size()) << where;
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(calls[i].name, full.tool_calls[i].name) << where;
      if (i + 1 < calls.size()) {
        EXPECT_EQ(calls[i], full.tool_calls[i]) << where;
      }
    }
    if (n == text.size()) {
      ASSERT_EQ(r.message, full) << where;
    }
  }
}

// Completions in the official format: an assistant message rendered by the encoder, cut out of
// the prompt after "<｜Assistant｜><think>" (thinking) or "<｜Assistant｜></think>" (chat).
struct Generated {
  std::string text;
  ThinkingMode mode;
  ParsedMessage want;  // what parsing must give back
};

std::string random_text(std::mt19937& rng, size_t max_pieces) {
  // Pieces that can touch tags ("<", "/", "｜", "\n") but never spell one.
  static const std::vector<std::string> pieces = {"a", "b c", "\n", "\n\n", "<", ">", "/", "\"", "\\", "中文",
                                                  "💡", "｜", "{", "}", "x<y", "é", "\t", "tool", "</", " name=",
                                                  "string", "\x01"};
  std::string s;
  for (size_t n = rng() % (max_pieces + 1); n > 0; --n) s += pieces[rng() % pieces.size()];
  return s;
}

json random_value(std::mt19937& rng, int depth) {
  static const std::vector<double> floats = {0.1, 1e16, 1e-5, -0.0, 2.5, 1e22, 123456789.123, 0.30000000000000004};
  switch (rng() % (depth < 2 ? 7 : 5)) {
    case 0: return random_text(rng, 4);
    case 1: return static_cast<int64_t>(rng() % 2000000) - 1000000;
    case 2: return rng() % 2 ? floats[rng() % floats.size()] : std::ldexp(static_cast<double>(rng()), -static_cast<int>(rng() % 60));
    case 3: return rng() % 2 == 0;
    case 4: return nullptr;
    case 5: {
      json a = json::array();
      for (size_t n = rng() % 4; n > 0; --n) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      for (size_t n = rng() % 4; n > 0; --n) o[random_text(rng, 2) + std::to_string(n)] = random_value(rng, depth + 1);
      return o;
    }
  }
}

Generated generate_completion(std::mt19937& rng) {
  static const std::vector<std::string> names = {"f", "get_weather", "名字", "a b"};
  Generated g;
  g.mode = rng() % 2 ? ThinkingMode::thinking : ThinkingMode::chat;
  json assistant = json::object();
  assistant["role"] = "assistant";
  assistant["reasoning_content"] = random_text(rng, 6);
  assistant["content"] = random_text(rng, 6);
  json calls = json::array();
  for (size_t n = rng() % 4; n > 0; --n) {
    json args = json::object();
    for (size_t k = rng() % 4; k > 0; --k) args[random_text(rng, 2) + std::to_string(k)] = random_value(rng, 1);
    json fn = json::object();
    fn["name"] = names[rng() % names.size()];
    fn["arguments"] = args.dump();
    json call = json::object();
    call["type"] = "function";
    call["function"] = fn;
    calls.push_back(call);
    // Parsing gives the arguments back as Python's json.dumps of the same object.
    g.want.tool_calls.push_back({fn["name"], to_python_json(args)});
  }
  if (!calls.empty()) assistant["tool_calls"] = calls;
  json user = json::object();
  user["role"] = "user";
  user["content"] = "u";
  const json messages = json::array({user, assistant});
  const std::string prompt = encode(messages, g.mode);
  const std::string marker = g.mode == ThinkingMode::thinking ? "<｜Assistant｜><think>" : "<｜Assistant｜></think>";
  g.text = prompt.substr(prompt.find(marker) + marker.size());
  if (g.mode == ThinkingMode::thinking) g.want.reasoning_content = assistant["reasoning_content"];
  g.want.content = assistant["content"];
  return g;
}

std::vector<std::pair<std::string, ThinkingMode>> official_completions() {
  std::vector<std::pair<std::string, ThinkingMode>> out;
  for (int n = 1; n <= 3; ++n)
    for (const std::string& t : assistant_turns(official_file("test_output_" + std::to_string(n) + ".txt")))
      out.push_back({t, ThinkingMode::thinking});
  const std::string p4 = official_file("test_output_4.txt");
  const std::string m4 = "<｜Assistant｜></think>";
  const size_t a4 = p4.find(m4) + m4.size();
  out.push_back({p4.substr(a4, p4.find("<｜User｜>", a4) - a4), ThinkingMode::chat});
  return out;
}

TEST(Stream, OfficialCompletionsAtEverySplit) {
  std::mt19937 rng(1);
  const auto completions = official_completions();
  ASSERT_EQ(completions.size(), 6u);  // case 2 drops its first turn's thinking
  for (const auto& [text, mode] : completions) expect_stream_matches(text, mode, rng);
}

TEST(Stream, GeneratedCompletionsRoundTripAtEverySplit) {
  std::mt19937 rng(2);
  for (int i = 0; i < 120; ++i) {
    const Generated g = generate_completion(rng);
    ASSERT_EQ(parse_completion(g.text, g.mode), g.want) << g.text;
    expect_stream_matches(g.text, g.mode, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(Stream, EveryTruncation) {
  std::mt19937 rng(3);
  for (const auto& [text, mode] : official_completions()) expect_truncations_sensible(text, mode, rng);
  for (int i = 0; i < 60; ++i) {
    const Generated g = generate_completion(rng);
    expect_truncations_sensible(g.text, g.mode, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(Stream, DeltasOfAToolCall) {
  StreamParser p(ThinkingMode::thinking);
  const std::string text = "Let me look.</think>" + kToolBlock + EOS;
  // Fed up to the middle of the first parameter's value.
  const size_t mid = text.find("jing");
  StreamDelta d = p.feed(text.substr(0, mid));
  EXPECT_EQ(d.reasoning_content, "Let me look.");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_TRUE(d.tool_calls[0].begin);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"location": "Bei \")");
  d = p.feed(text.substr(mid));
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].index, 0u);
  EXPECT_FALSE(d.tool_calls[0].begin);
  EXPECT_EQ(d.tool_calls[0].arguments, R"(jing\"\n中", "days": 5, "opts": {"a": [1, 2.50]}})");
  EXPECT_EQ(d.tool_calls[1].index, 1u);
  EXPECT_TRUE(d.tool_calls[1].begin);
  EXPECT_EQ(d.tool_calls[1].arguments, "{}");
  EXPECT_TRUE(p.done());
  EXPECT_TRUE(p.finish().empty());
  EXPECT_FALSE(p.truncated());
}

TEST(Stream, HoldsBackPossibleMarkup) {
  StreamParser p(ThinkingMode::thinking);
  EXPECT_EQ(p.feed("abc</thi").reasoning_content, "abc");
  StreamDelta d = p.feed("nk>Hi\n");
  EXPECT_EQ(d.content, "Hi");  // "\n" could open a tool-call block
  d = p.feed("\n<｜DS");
  EXPECT_TRUE(d.empty());
  d = p.feed("ML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + EOS);
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "f");
  EXPECT_EQ(p.message().content, "Hi");
  // A "\n" that turns out to be text is released with what follows.
  StreamParser q(ThinkingMode::chat);
  EXPECT_EQ(q.feed("a\n").content, "a");
  EXPECT_EQ(q.feed("b").content, "\nb");
  // Half of a UTF-8 character waits for the rest.
  EXPECT_EQ(q.feed("\xE4\xB8").content, "");
  EXPECT_EQ(q.feed("\xAD").content, "中");
}

TEST(Stream, LenientWhereTheOfficialParserRefuses) {
  // A tool-call block before "</think>" ends the reasoning.
  const std::string text = "I need the weather." + kToolBlock + EOS;
  EXPECT_ERROR(parse_completion(text, ThinkingMode::thinking), "missing </think>");
  for (const auto& cuts : {std::vector<size_t>{}, every_byte(text.size())}) {
    const StreamResult r = run_stream(text, ThinkingMode::thinking, cuts);
    EXPECT_EQ(r.problem, "");
    EXPECT_EQ(r.error, "");
    EXPECT_FALSE(r.truncated);
    EXPECT_EQ(r.message.reasoning_content, "I need the weather.");
    EXPECT_EQ(r.message.content, "");
    EXPECT_EQ(r.message.tool_calls, parse_completion("x</think>" + kToolBlock + EOS, ThinkingMode::thinking).tool_calls);
  }
  // Stray tags are cut out, also when the text around them would spell a tag.
  const std::string strays = "<think>r</think>a</think>b<th<think>ink>c" + BOS + EOS;
  const StreamResult stray = run_stream(strays, ThinkingMode::thinking, every_byte(strays.size()));
  EXPECT_EQ(stray.problem, "");
  EXPECT_EQ(stray.message.reasoning_content, "r");
  EXPECT_EQ(stray.message.content, "ab<thc");
  // The block may open without its blank line.
  const StreamResult bare = run_stream("</think>x<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n" +
                                           TC_CLOSE + EOS, ThinkingMode::chat, {});
  EXPECT_EQ(bare.error, "");
  EXPECT_EQ(bare.message.content, "x");
  EXPECT_EQ(bare.message.tool_calls, (std::vector<ToolCall>{{"f", "{}"}}));
  // The end-of-sentence token inside the reasoning ends the message.
  const StreamResult eos = run_stream("r" + EOS, ThinkingMode::thinking, {});
  EXPECT_FALSE(eos.truncated);
  EXPECT_EQ(eos.message.reasoning_content, "r");
}

TEST(Stream, TruncationClosesWhatIsOpen) {
  const std::string head = "</think>" + TC_OPEN + "<｜DSML｜invoke name=\"f\">\n";
  const auto final_of = [](const std::string& t) { return run_stream(t, ThinkingMode::chat, {}); };
  StreamResult r = final_of(head + "<｜DSML｜parameter name=\"a\" string=\"true\">Bei</｜DSML｜para");
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.message.tool_calls, (std::vector<ToolCall>{{"f", R"({"a": "Bei"})"}}));
  r = final_of(head + "<｜DSML｜parameter name=\"a\" string=\"false\">[1, 2");
  EXPECT_EQ(r.message.tool_calls, (std::vector<ToolCall>{{"f", R"({"a": [1, 2})"}}));
  r = final_of(head + "<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>\n<｜DSML｜parameter name=\"b\" str");
  EXPECT_EQ(r.message.tool_calls, (std::vector<ToolCall>{{"f", R"({"a": "1"})"}}));
  r = final_of("</think>" + TC_OPEN + "<｜DSML｜invoke name=\"get_wea");
  EXPECT_TRUE(r.message.tool_calls.empty());
  r = final_of("Hello wor");
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.message.content, "Hello wor");
}

TEST(Stream, MalformedSetsErrorWithoutThrowing) {
  const std::string head = TC_OPEN + "<｜DSML｜invoke name=\"f\">\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a<｜DSML｜invoke name=\"f\">", "DSML markup outside a tool-call block"},
      {"a\n\n<｜DSML｜tool_callsX", "tool call format error"},
      {TC_OPEN + "<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>", "tool name format error"},
      {head + "<｜DSML｜parameter nam", "parameter format error"},
      {head + "<｜DSML｜parameter name=\"a\">1</｜DSML｜parameter>", "parameter format error"},
      {head + "<｜DSML｜parameter name=\"a\" string=\"true\">1/｜DSML｜parameter>", "must end with '<'"},
      {head + "<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>x", "expected '>\\n' after"},
      {head + "<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>\n<｜DSML｜parameter name=\"a\" string=\"true\">",
       "duplicate parameter name 'a'"},
      {TC_OPEN + TC_CLOSE + "x", "unexpected content after </｜DSML｜tool_calls>"},
      {"a" + EOS + "more", "text after the end-of-sentence token"},
  };
  for (const auto& [text, fragment] : cases) {
    for (const auto& cuts : {std::vector<size_t>{}, every_byte(text.size())}) {
      const StreamResult r = run_stream(text + "trailing" + EOS, ThinkingMode::chat, cuts);
      EXPECT_EQ(r.problem, "") << text;
      EXPECT_NE(r.error.find(fragment), std::string::npos) << text << "\nerror: " << r.error;
      EXPECT_FALSE(r.truncated) << text;
    }
  }
  StreamParser p(ThinkingMode::chat);
  p.finish();
  EXPECT_THROW(p.feed("x"), Error);  // a caller's mistake, not the model's
}

// whole_calls (what the server runs): on well-formed text the same message as without it; a
// block's calls only once the block closes; a broken block gives no call and its raw text.
TEST(StreamWholeCalls, WellFormedTextGivesTheSameMessage) {
  std::mt19937 rng(4);
  std::vector<std::pair<std::string, ThinkingMode>> texts = official_completions();
  for (int i = 0; i < 60; ++i) {
    const Generated g = generate_completion(rng);
    texts.push_back({g.text, g.mode});
  }
  for (const auto& [text, mode] : texts) {
    const ParsedMessage want = parse_completion(text, mode);
    for (const auto& cuts : {std::vector<size_t>{}, every_byte(text.size()), random_cuts(text.size(), rng)}) {
      const StreamResult r = run_stream(text, mode, cuts, /*whole_calls=*/true);
      ASSERT_EQ(r.problem, "") << text;
      ASSERT_EQ(r.error, "") << text;
      ASSERT_EQ(r.message, want) << text;
      ASSERT_FALSE(r.truncated) << text;
    }
  }
}

// Cut anywhere (the token limit), a completion keeps every byte: calls come all or none, and
// with none, the text from the block's opening tag on is the content's end.
TEST(StreamWholeCalls, EveryTruncationKeepsTheText) {
  std::mt19937 rng(5);
  std::vector<std::pair<std::string, ThinkingMode>> texts = official_completions();
  for (int i = 0; i < 40; ++i) {
    const Generated g = generate_completion(rng);
    texts.push_back({g.text, g.mode});
  }
  for (const auto& [text, mode] : texts) {
    const ParsedMessage full = parse_completion(text, mode);
    for (size_t n = 0; n <= text.size(); ++n) {
      const std::string prefix = text.substr(0, n);
      const StreamResult r = run_stream(prefix, mode, random_cuts(n, rng), /*whole_calls=*/true);
      const std::string where = "prefix of " + std::to_string(n) + " bytes: " + prefix;
      ASSERT_EQ(r.problem, "") << where;
      const bool closed = prefix.find(TC_CLOSE) != std::string::npos;
      if (closed) {
        ASSERT_EQ(r.message.tool_calls, full.tool_calls) << where;
        ASSERT_EQ(r.error, "") << where;
      } else {
        ASSERT_TRUE(r.message.tool_calls.empty()) << where;
      }
      const size_t open = prefix.find("\n\n<｜DSML｜tool_calls>");
      if (!closed && open != std::string::npos) {
        ASSERT_TRUE(r.message.content.ends_with(prefix.substr(open))) << where << "\ncontent: " << r.message.content;
        ASSERT_NE(r.error.find("ended inside a tool call"), std::string::npos) << where;
      }
    }
  }
}

TEST(StreamWholeCalls, BrokenBlocksBecomeTheirText) {
  const std::string head = TC_OPEN + "<｜DSML｜invoke name=\"f\">\n";
  const std::string param = "<｜DSML｜parameter name=\"city\" string=\"true\">";
  struct Case {
    std::string text, content, error;
    bool truncated;
  };
  const std::vector<Case> cases = {
      // Malformed DSML after some prose: the prose and the block's raw characters.
      {"Let me check." + TC_OPEN + "<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS,
       "Let me check." + TC_OPEN + "<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>\n" + TC_CLOSE, "tool name format error",
       false},
      // The end-of-sentence token inside a parameter: no call, no token text.
      {"Hi" + head + param + "Bei" + EOS, "Hi" + head + param + "Bei", "end-of-sentence token inside a tool call", false},
      // Cut by the token limit inside a call.
      {"Hi" + head + param + "Bei", "Hi" + head + param + "Bei", "ended inside a tool call", true},
      // A value given as JSON that is not JSON: no call a client could run.
      {head + "<｜DSML｜parameter name=\"days\" string=\"false\">three</｜DSML｜parameter>\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS,
       head + "<｜DSML｜parameter name=\"days\" string=\"false\">three</｜DSML｜parameter>\n</｜DSML｜invoke>\n" + TC_CLOSE,
       "its arguments are not JSON", false},
      // Markup outside a block, and what follows it.
      {"a<｜DSML｜invoke name=\"f\">b" + EOS, "a<｜DSML｜invoke name=\"f\">b", "DSML markup outside a tool-call block", false},
      // A second call breaks: the first goes too (a block is all or nothing).
      {head + param + "x</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"g\">\n" + param + "y</｜DSML｜parameter>x" +
           EOS,
       head + param + "x</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"g\">\n" + param + "y</｜DSML｜parameter>x",
       "expected '>\\n' after", false},
  };
  for (const Case& c : cases) {
    for (const auto& cuts : {std::vector<size_t>{}, every_byte(c.text.size())}) {
      const StreamResult r = run_stream(c.text, ThinkingMode::chat, cuts, /*whole_calls=*/true);
      EXPECT_EQ(r.problem, "") << c.text;
      EXPECT_TRUE(r.message.tool_calls.empty()) << c.text;
      EXPECT_EQ(r.message.content, c.content) << c.text;
      EXPECT_NE(r.error.find(c.error), std::string::npos) << c.text << "\nerror: " << r.error;
      EXPECT_EQ(r.truncated, c.truncated) << c.text;
    }
  }
  // Text after a whole block that is not the end-of-sentence token: the calls stay, the text too.
  const std::string after = head + "</｜DSML｜invoke>\n" + TC_CLOSE + "oops" + EOS;
  const StreamResult r = run_stream(after, ThinkingMode::chat, {}, /*whole_calls=*/true);
  EXPECT_EQ(r.message.tool_calls, (std::vector<ToolCall>{{"f", "{}"}}));
  EXPECT_EQ(r.message.content, "oops");
  EXPECT_NE(r.error.find("unexpected content after"), std::string::npos);
}

TEST(StreamWholeCalls, CallsComeOutWhenTheBlockCloses) {
  StreamParser p(ThinkingMode::thinking, /*whole_calls=*/true);
  const std::string text = "Let me look.</think>" + kToolBlock + EOS;
  const size_t close = text.find(TC_CLOSE);
  StreamDelta d = p.feed(text.substr(0, close + 5));
  EXPECT_EQ(d.reasoning_content, "Let me look.");
  EXPECT_TRUE(d.tool_calls.empty());
  d = p.feed(text.substr(close + 5));
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_TRUE(d.tool_calls[0].begin && d.tool_calls[1].begin);
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"location": "Bei \"jing\"\n中", "days": 5, "opts": {"a": [1, 2.50]}})");
  EXPECT_TRUE(p.done());
}

// ---------------------------------------------------------------------------------------------
// Fuzz: fixed seeds, bounded iterations. Neither parser may crash or throw anything but
// dsv4::Error (the one-shot parser on malformed text); the stream never throws, never leaks
// markup into text, and equals the one-shot parser whenever that accepts the text.

const std::vector<std::string> kFragments = {
    "<think>", "</think>", TC_OPEN, "<｜DSML｜tool_calls>", "<｜DSML｜invoke name=\"f\">\n", "<｜DSML｜invoke name=\"g\">\n\n",
    "<｜DSML｜parameter name=\"a\" string=\"true\">", "<｜DSML｜parameter name=\"b\" string=\"false\">",
    "</｜DSML｜parameter>\n", "</｜DSML｜invoke>\n", TC_CLOSE, EOS, BOS, "x", "中", "<", ">\n", "\n", "\"", "[1, 2]", "</",
    "｜", "/｜DSML｜parameter", "<\n", "<｜", "｜DSML｜"};

// Checks both parsers on one text; returns whether the one-shot parser accepted it.
bool check_both_parsers(const std::string& text, ThinkingMode mode, std::mt19937& rng) {
  bool accepted = false;
  ParsedMessage want;
  try {
    want = parse_completion(text, mode);
    accepted = true;
  } catch (const Error&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << "parse_completion threw a non-dsv4 exception: " << e.what() << "\n" << text;
  }
  for (const auto& cuts : {random_cuts(text.size(), rng), every_byte(text.size())}) {
    const StreamResult r = run_stream(text, mode, cuts);
    EXPECT_EQ(r.problem, "") << text;
    if (accepted) {
      EXPECT_EQ(r.error, "") << text;
      EXPECT_EQ(r.message, want) << text;
    }
  }
  return accepted;
}

TEST(Fuzz, RandomBytes) {
  std::mt19937 rng(4);
  for (int i = 0; i < 1500; ++i) {
    std::string text;
    for (size_t n = rng() % 48; n > 0; --n)
      text += rng() % 2 ? std::string(1, static_cast<char>(rng() % 256)) : kFragments[rng() % kFragments.size()].substr(0, 1 + rng() % 4);
    check_both_parsers(text, rng() % 2 ? ThinkingMode::thinking : ThinkingMode::chat, rng);
    if (HasFailure()) return;
  }
}

TEST(Fuzz, MarkupMixtures) {
  std::mt19937 rng(5);
  for (int i = 0; i < 1500; ++i) {
    std::string text;
    for (size_t n = rng() % 14; n > 0; --n) text += kFragments[rng() % kFragments.size()];
    check_both_parsers(text, rng() % 2 ? ThinkingMode::thinking : ThinkingMode::chat, rng);
    if (HasFailure()) return;
  }
}

// Valid completions with a few fragments inserted, deleted or swapped: near misses that reach
// deep into the tool-call grammar, some still valid.
TEST(Fuzz, MutatedCompletions) {
  std::mt19937 rng(6);
  int accepted = 0;
  for (int i = 0; i < 1500; ++i) {
    std::vector<std::string> parts;
    const ThinkingMode mode = rng() % 2 ? ThinkingMode::thinking : ThinkingMode::chat;
    if (mode == ThinkingMode::thinking) parts = {"r", "</think>"};
    parts.push_back(rng() % 2 ? "c" : "");
    if (rng() % 3) {
      parts.push_back(TC_OPEN);
      for (size_t calls = 1 + rng() % 2; calls > 0; --calls) {
        const size_t params = rng() % 3;
        parts.push_back(params ? "<｜DSML｜invoke name=\"f\">\n" : "<｜DSML｜invoke name=\"g\">\n\n");
        for (size_t k = 0; k < params; ++k) {
          parts.push_back(std::string("<｜DSML｜parameter name=\"") + char('a' + k) + "\" string=\"" +
                          (rng() % 2 ? "true" : "false") + "\">");
          parts.push_back(rng() % 2 ? "v<\"\n中" : "[1, 2]");
          parts.push_back("</｜DSML｜parameter>\n");
        }
        parts.push_back("</｜DSML｜invoke>\n");
      }
      parts.push_back(TC_CLOSE);
    }
    parts.push_back(EOS);
    for (size_t m = rng() % 3; m > 0; --m) {
      const size_t at = rng() % parts.size();
      switch (rng() % 3) {
        case 0: parts.erase(parts.begin() + at); break;
        case 1: parts.insert(parts.begin() + at, kFragments[rng() % kFragments.size()]); break;
        default: std::swap(parts[at], parts[rng() % parts.size()]);
      }
      if (parts.empty()) break;
    }
    std::string text;
    for (const std::string& p : parts) text += p;
    accepted += check_both_parsers(text, mode, rng);
    if (HasFailure()) return;
  }
  EXPECT_GT(accepted, 300);  // the equality check must have had valid texts to bite on
}

// ---------------------------------------------------------------------------------------------
// The render and parse commands

TEST(Cli, RenderOfficialCases) {
  const std::string dir = test::shared_dir() + "/chat/official/";
  for (int n = 1; n <= 4; ++n) {
    const std::string mode = n == 4 ? "chat" : "thinking";
    const auto r = test::run_command(test::dsv4_binary() + " render --thinking-mode " + mode + " < " + dir + "test_input_" +
                                     std::to_string(n) + ".json");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output, official_file("test_output_" + std::to_string(n) + ".txt")) << "case " << n;
  }
}

TEST(Cli, RenderOptions) {
  test::TempDir tmp;
  test::write_file(tmp.file("m.json"), R"([{"role": "user", "content": "hi"}])");
  auto r = test::run_command(test::dsv4_binary() + " render --thinking-mode thinking --reasoning-effort max < " + tmp.file("m.json"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, encode(json::parse(R"([{"role": "user", "content": "hi"}])"), ThinkingMode::thinking, true, ReasoningEffort::max));
  const std::string two = test::shared_dir() + "/chat/official/test_input_2.json";
  r = test::run_command(test::dsv4_binary() + " render --thinking-mode thinking --keep-thinking < " + two);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, encode(official_messages(2), ThinkingMode::thinking, /*drop_thinking=*/false));
  // Tools beside messages that do not start with a system message get one of their own.
  test::write_file(tmp.file("t.json"),
                   R"({"messages": [{"role": "user", "content": "u"}], "tools": [{"type": "function", "function": {"name": "f"}}]})");
  r = test::run_command(test::dsv4_binary() + " render --thinking-mode chat < " + tmp.file("t.json"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, BOS + "\n\n" + render_tools(json::parse(R"([{"type": "function", "function": {"name": "f"}}])")) +
                          "<｜User｜>u<｜Assistant｜></think>");
}

TEST(Cli, ParsePrintsTheMessage) {
  test::TempDir tmp;
  const std::string text = "think</think>" + kToolBlock + EOS;
  test::write_file(tmp.file("c.txt"), text);
  const auto r = test::run_command(test::dsv4_binary() + " parse --thinking-mode thinking < " + tmp.file("c.txt"));
  ASSERT_EQ(r.status, 0) << r.output;
  const json got = json::parse(r.output);
  EXPECT_EQ(got, parse_completion(text, ThinkingMode::thinking).to_json());
  EXPECT_EQ(got["tool_calls"][0]["function"]["arguments"], R"({"location": "Bei \"jing\"\n中", "days": 5, "opts": {"a": [1, 2.50]}})");
}

TEST(Cli, BadInputExitsWithMessage) {
  test::TempDir tmp;
  struct Case {
    std::string args, input, fragment;
  };
  const std::vector<Case> cases = {
      {"render --thinking-mode chat", "{not json", "stdin is not JSON"},
      {"render --thinking-mode chat", R"([{"role": "robot", "content": "x"}])", "messages[0] has unknown role 'robot'"},
      {"render --thinking-mode chat", R"({"messages": [], "model": "x"})", "unexpected key 'model'"},
      {"render --thinking-mode chat", R"({"tools": []})", "stdin must hold"},
      {"render --thinking-mode chat", R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 1}}]}])",
       "arguments must be a JSON string"},
      {"render", "[]", "--thinking-mode chat|thinking is required"},
      {"render --thinking-mode fast", "[]", "unknown thinking mode 'fast'"},
      {"render --thinking-mode thinking --reasoning-effort extreme", "[]", "unknown reasoning effort 'extreme'"},
      {"parse --thinking-mode chat", "no end", "missing the end-of-sentence token"},
      {"parse --thinking-mode thinking", "no think end" + EOS, "missing </think>"},
      {"parse --thinking-mode chat", TC_OPEN + "<｜DSML｜invoke nome=\"f\">\n</｜DSML｜invoke>\n" + TC_CLOSE + EOS,
       "tool name format error"},
      {"parse", "x" + EOS, "--thinking-mode chat|thinking is required"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string in = tmp.file("in" + std::to_string(i));
    test::write_file(in, cases[i].input);
    const auto r = test::run_command(test::dsv4_binary() + " " + cases[i].args + " < " + in);
    EXPECT_EQ(r.status, 1) << cases[i].args << "\n" << r.output;
    EXPECT_NE(r.output.find(cases[i].fragment), std::string::npos) << cases[i].args << "\n" << r.output;
  }
}

}  // namespace

void PrintTo(const ParsedMessage& m, std::ostream* os) { *os << m.to_json().dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace dsv4::chat

namespace dsv4::chat {
namespace {

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// JSON from outside is parsed with a nesting bound (core/json_input.h): 128 levels pass, deeper
// input is refused while parsing, before anything recursive (copies, dumps, the encoder's
// writer) sees it. Before the bound, tool arguments nested 50,000 deep overflowed the stack.
TEST(JsonInput, NestingBeyondTheLimitIsRefused) {
  EXPECT_NO_THROW(parse_json(nested(kMaxJsonDepth)));
  EXPECT_ERROR(parse_json(nested(kMaxJsonDepth + 1)), "JSON nested deeper than 128 levels");
  EXPECT_ERROR(parse_json<json>(nested(100000)), "JSON nested deeper than 128 levels");
  const std::string deep_object = [] {
    std::string s;
    for (int i = 0; i < 300000; ++i) s += "{\"a\":";
    return s + "1" + std::string(300000, '}');
  }();
  EXPECT_ERROR(parse_json(deep_object), "JSON nested deeper than 128 levels");
}

TEST(Encode, DeeplyNestedToolArgumentsAreRefused) {
  json m = json::array();
  m.push_back({{"role", "user"}, {"content", "q"}});
  json call = {{"type", "function"}, {"function", {{"name", "f"}, {"arguments", "{\"x\": " + nested(50000) + "}"}}}};
  m.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array({call})}});
  EXPECT_ERROR(encode(m, ThinkingMode::thinking), "JSON nested deeper than 128 levels");
  // Within the bound the arguments render as before.
  m[1]["tool_calls"][0]["function"]["arguments"] = "{\"x\": " + nested(100) + "}";
  EXPECT_NE(encode(m, ThinkingMode::thinking).find(nested(100)), std::string::npos);
}

// 100,000 tool calls parse in well under a second (each read of the block used to search to its
// end for the closing tag: minutes). ctest's time limit on this binary (120 s) is the guard;
// the result is checked in full.
TEST(Parse, ManyToolCallsInLinearTime) {
  const std::string call = "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"x\" string=\"true\">v</｜DSML｜parameter>\n</｜DSML｜invoke>\n";
  std::string text = "hi\n\n<｜DSML｜tool_calls>\n";
  for (int i = 0; i < 100000; ++i) text += call;
  text += "</｜DSML｜tool_calls><｜end▁of▁sentence｜>";
  const ParsedMessage m = parse_completion(text, ThinkingMode::chat);
  ASSERT_EQ(m.tool_calls.size(), 100000u);
  EXPECT_EQ(m.content, "hi");
  for (const ToolCall& c : m.tool_calls) ASSERT_EQ(c.arguments, "{\"x\": \"v\"}");
}

// The V4-Flash-0731 encoder's reasoning-effort preambles (../shared/chat/0731/reasoning-effort.md):
// low adds nothing, high is April's max preamble byte for byte, max a new one (528 bytes, the
// sha256 the note gives); only message 0 of a thinking-mode conversation gets one, and the rest
// of the prompt is the same for every level. "low" is not an April level.
TEST(Encode0731, ReasoningEffortPreambles) {
  const json messages = json::parse(R"([{"role": "user", "content": "solve it"}])");
  auto render = [&](ChatFormat f, ReasoningEffort e, ThinkingMode m = ThinkingMode::thinking,
                    const json& context = json::array()) {
    EncodeOptions o;
    o.format = f;
    o.reasoning_effort = e;
    o.thinking_mode = m;
    return encode_messages(messages, o, context);
  };
  const std::string bos = "<｜begin▁of▁sentence｜>", bare = render(ChatFormat::v0731, ReasoningEffort::low);
  EXPECT_EQ(bare, bos + "<｜User｜>solve it<｜Assistant｜><think>");
  EXPECT_EQ(render(ChatFormat::v0731, ReasoningEffort::none), bare);
  EXPECT_EQ(render(ChatFormat::april, ReasoningEffort::high), bare);
  EXPECT_EQ(render(ChatFormat::v0731, ReasoningEffort::high), render(ChatFormat::april, ReasoningEffort::max));
  const std::string high = render(ChatFormat::v0731, ReasoningEffort::high), max = render(ChatFormat::v0731, ReasoningEffort::max);
  const std::string high_pre = high.substr(bos.size(), high.size() - bare.size());
  const std::string max_pre = max.substr(bos.size(), max.size() - bare.size());
  EXPECT_EQ(high.substr(bos.size() + high_pre.size()), bare.substr(bos.size()));
  EXPECT_EQ(max.substr(bos.size() + max_pre.size()), bare.substr(bos.size()));
  EXPECT_EQ(high_pre.size(), 476u);
  EXPECT_EQ(max_pre.size(), 528u);
  EXPECT_EQ(max_pre.rfind("Reasoning Effort: Beyond maximum \xE2\x80\x94 exhaustive", 0), 0u);
  EXPECT_EQ(max_pre.substr(max_pre.size() - 2), "\n\n");
  test::TempDir d;
  test::write_file(d.file("high"), high_pre);
  test::write_file(d.file("max"), max_pre);
  const auto sums = test::run_command("sha256sum " + d.file("high") + " " + d.file("max"));
  EXPECT_NE(sums.output.find("f7a24f3b3050d4a83781e9b755b316aae2ec1d9dc87562541d90bcb04d7350f7"), std::string::npos)
      << sums.output;
  EXPECT_NE(sums.output.find("53fb31b8392ec5b4a926481943efc67636748f137c1a49d493a7af4d4fa55d2c"), std::string::npos)
      << sums.output;
  // Chat mode, and a continuation (message 0 is in the context), get none.
  EXPECT_EQ(render(ChatFormat::v0731, ReasoningEffort::max, ThinkingMode::chat),
            render(ChatFormat::v0731, ReasoningEffort::low, ThinkingMode::chat));
  const json context = json::parse(R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}])");
  EXPECT_EQ(render(ChatFormat::v0731, ReasoningEffort::max, ThinkingMode::thinking, context),
            render(ChatFormat::v0731, ReasoningEffort::low, ThinkingMode::thinking, context));
  EXPECT_ERROR(render(ChatFormat::april, ReasoningEffort::low), "'low' is a V4-Flash-0731 level");
  EXPECT_ERROR(parse_chat_format("1231"), "unknown chat format '1231'");
  EXPECT_EQ(parse_chat_format("0731"), ChatFormat::v0731);
}

}  // namespace
}  // namespace dsv4::chat
