// Task families, their worked solutions and checkers; rendering through chat/encode.
#include "posttrain/tasks.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iterator>

#include "chat/encode.h"
#include "core/check.h"
#include "core/json_input.h"

namespace dsv4 {

namespace {

int pick(std::mt19937_64& rng, int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); }
std::string str(long long v) { return std::to_string(v); }

std::string list_text(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + str(v[i]);
  return s + "]";
}

// Whose tasks the generator is making (task_at sets it from the seed; see tasks.h).
enum class Split { sft, rl, eval };
thread_local Split split = Split::sft;

// Words and cities come from two disjoint pools: supervised and GRPO tasks draw from the first,
// evaluation tasks from the second, so pass@1 does not reward memorizing them.
const std::vector<std::string>& words() {
  static const std::vector<std::string> train = {"garden", "river", "window", "planet", "silver", "market",
                                                 "candle", "forest", "letter", "bridge", "summer", "pencil"};
  static const std::vector<std::string> eval = {"harbor", "meadow", "rocket", "violin", "castle", "jacket",
                                                "island", "mirror", "tunnel", "parrot"};
  return split == Split::eval ? eval : train;
}

const std::vector<std::string>& cities() {
  static const std::vector<std::string> train = {"Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Delhi"};
  static const std::vector<std::string> eval = {"Rome", "Quito", "Seoul", "Accra", "Perth"};
  return split == Split::eval ? eval : train;
}

// Tasks whose answer is computed (a sum, a product) are split by a hash of their text: a
// quarter of all problems for evaluation, a quarter for GRPO, half for supervised data, so a
// two-digit problem seen in training is never scored and GRPO's are new to the model it
// starts from. (Tasks that copy from the prompt need no split.)
Split split_of(const std::string& problem) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: stable across platforms and runs
  for (unsigned char c : problem) h = (h ^ c) * 1099511628211ULL;
  return h % 4 == 0 ? Split::eval : h % 4 == 1 ? Split::rl : Split::sft;
}

// The small models attend 64 or 128 tokens back at full resolution (the sliding window), so every
// worked solution is written so that each step copies from at most a few dozen tokens earlier:
// the columns restate their digits, and the answer follows the result it repeats.
// Five columns: a sum of two four-digit numbers (level 3).
const char* const kColumns[] = {"Ones", "Tens", "Hundreds", "Thousands", "Ten-thousands"};
constexpr int kMaxColumns = static_cast<int>(std::size(kColumns));

// 10^n.
long long power_of_ten(int n) {
  long long p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

// Column addition of two numbers, the carries written out.
std::string addition_work(long long a, long long b) {
  std::string r;
  int carry = 0;
  for (int col = 0; (a > 0 || b > 0 || carry) && col < kMaxColumns; ++col) {
    const int da = static_cast<int>(a % 10), db = static_cast<int>(b % 10), s = da + db + carry;
    r += std::string(col ? " " : "") + kColumns[col] + ": " + str(da) + " + " + str(db) + (carry ? " + 1" : "") +
         " = " + str(s) + (s >= 10 ? ", write " + str(s % 10) + " and carry 1." : ".");
    carry = s >= 10, a /= 10, b /= 10;
  }
  return r;
}

// Column subtraction (a >= b), the borrows written out.
std::string subtraction_work(long long a, long long b) {
  std::string r;
  int borrow = 0;
  for (int col = 0; a > 0 && col < kMaxColumns; ++col) {
    const int da = static_cast<int>(a % 10), db = static_cast<int>(b % 10);
    const std::string left = str(da) + (borrow ? " - 1" : "") + " - " + str(db);
    const int d = da - borrow - db;
    r += std::string(col ? " " : "") + kColumns[col] + ": " +
         (d < 0 ? left + " needs a borrow, 1" + left + " = " + str(d + 10) + "." : left + " = " + str(d) + ".");
    borrow = d < 0, a /= 10, b /= 10;
  }
  return r;
}

// A product with one digit, place by place: "40 * 6 = 240 and 7 * 6 = 42, and 240 + 42 = 282."
std::string product_work(long long a, long long b) {
  std::vector<long long> places;  // 347: 300, 40, 7
  for (long long p = power_of_ten(static_cast<int>(str(a).size()) - 1); p >= 1; p /= 10) places.push_back(a / p % 10 * p);
  std::string parts, sum;
  for (size_t i = 0; i < places.size(); ++i) {
    parts += std::string(i == 0 ? "" : i + 1 == places.size() ? " and " : ", ") + str(places[i]) + " * " + str(b) +
             " = " + str(places[i] * b);
    sum += (i ? " + " : "") + str(places[i] * b);
  }
  return parts + ", and " + sum + " = " + str(a * b) + ".";
}

Task math_problem(std::mt19937_64& rng, int level) {
  Task t;
  t.domain = Domain::math;
  const long long low = power_of_ten(level);  // operands of level + 1 digits
  long long a = low + pick(rng, 9 * low), b = low + pick(rng, 9 * low), result = 0;
  std::string op, work, what;
  switch (pick(rng, 3)) {
    case 0:
      op = "+", result = a + b, work = addition_work(a, b), what = "sum";
      break;
    case 1:
      if (a < b) std::swap(a, b);
      op = "-", result = a - b, work = subtraction_work(a, b), what = "difference";
      break;
    default:
      b = 2 + pick(rng, 8);
      op = "*", result = a * b, work = product_work(a, b), what = "product";
      break;
  }
  const std::string problem = str(a) + " " + op + " " + str(b);
  t.user = "What is " + problem + "?";
  t.reasoning = problem + ". " + work + " So the " + what + " is " + str(result) + ".";
  t.answer = problem + " = " + str(result) + ".";
  t.expected = str(result);
  return t;
}

Task math_task(std::mt19937_64& rng, int level) {
  Task t;
  do t = math_problem(rng, level);
  while (split_of(t.user) != split);
  return t;
}

Task code_task(std::mt19937_64& rng, int level) {
  Task t;
  t.domain = Domain::code;
  std::vector<int> xs(2 * level + 1 + pick(rng, 2));
  for (int& x : xs) x = pick(rng, 50 * level);
  std::string program, why;
  switch (pick(rng, 7)) {
    case 0: {
      std::vector<int> s = xs;
      std::sort(s.begin(), s.end());
      program = "xs = " + list_text(xs) + "\nprint(sorted(xs))";
      t.expected = list_text(s);
      why = "sorted returns the numbers in increasing order";
      break;
    }
    case 1: {
      if (level > 1) {  // any element
        const int k = pick(rng, static_cast<int>(xs.size()));
        program = "xs = " + list_text(xs) + "\nprint(xs[" + str(k) + "])";
        t.expected = str(xs[k]);
        why = "xs[" + str(k) + "] is element " + str(k) + ", counting from 0";
        break;
      }
      const bool first = pick(rng, 2) == 0;
      program = "xs = " + list_text(xs) + "\nprint(xs[" + (first ? "0" : "-1") + "])";
      t.expected = str(first ? xs.front() : xs.back());
      why = first ? "xs[0] is the first element" : "xs[-1] is the last element";
      break;
    }
    case 2: {
      // Digits only, so that the running total is a chain of small sums; a computed answer,
      // so the lists are split between supervised data, GRPO and evaluation.
      do
        for (int& x : xs) x = pick(rng, 10);
      while (split_of(list_text(xs)) != split);
      program = "xs = " + list_text(xs) + "\nprint(sum(xs))";
      int total = xs[0];
      why = "sum adds the numbers: " + str(total);
      for (size_t i = 1; i < xs.size(); ++i) {
        why += std::string(i > 1 ? ", " + str(total) : "") + " + " + str(xs[i]);
        total += xs[i];
        why += " = " + str(total);
      }
      t.expected = str(total);
      break;
    }
    case 3:
      program = "xs = " + list_text(xs) + "\nprint(len(xs))";
      t.expected = str(static_cast<long long>(xs.size()));
      why = "len counts the elements of the list";
      break;
    case 4:
      program = "xs = " + list_text(xs) + "\nprint(max(xs))";
      t.expected = str(*std::max_element(xs.begin(), xs.end()));
      why = "max returns the largest element";
      break;
    case 5:
      program = "xs = " + list_text(xs) + "\nprint(min(xs))";
      t.expected = str(*std::min_element(xs.begin(), xs.end()));
      why = "min returns the smallest element";
      break;
    default: {
      std::vector<std::string> ws(2 + level);
      std::string list = "[";
      for (size_t i = 0; i < ws.size(); ++i) {
        ws[i] = words()[pick(rng, static_cast<int>(words().size()))];
        list += (i ? ", \"" : "\"") + ws[i] + "\"";
      }
      const int k = pick(rng, static_cast<int>(ws.size()));
      program = "ws = " + list + "]\nprint(ws[" + str(k) + "])";
      t.expected = ws[k];
      why = "ws[" + str(k) + "] is element " + str(k) + ", counting from 0";
      break;
    }
  }
  t.user = "What does this Python program print?\n```python\n" + program + "\n```";
  t.reasoning = why + ", which gives " + t.expected + ".";
  t.answer = "It prints `" + t.expected + "`.";
  return t;
}

Task agentic_task(std::mt19937_64& rng, int level) {
  const int hundreds = static_cast<int>(power_of_ten(2 * (level - 1)));  // each level two digits more
  Task t;
  t.domain = Domain::agentic;
  t.tools = agent_tools();
  switch (pick(rng, 4)) {
    case 0: {
      const int a = pick(rng, 1000 * hundreds), b = pick(rng, 1000 * hundreds);
      t.user = "Use the add tool to add " + str(a) + " and " + str(b) + ".";
      t.call = {{"name", "add"}, {"arguments", {{"a", a}, {"b", b}}}};
      t.reasoning = "The user wants the sum of " + str(a) + " and " + str(b) + ", so I call add.";
      break;
    }
    case 1: {
      const int a = pick(rng, 100 * hundreds), b = pick(rng, 100 * hundreds);
      t.user = "What is " + str(a) + " times " + str(b) + "? Use the multiply tool.";
      t.call = {{"name", "multiply"}, {"arguments", {{"a", a}, {"b", b}}}};
      t.reasoning = "The user wants the product of " + str(a) + " and " + str(b) + ", so I call multiply.";
      break;
    }
    case 2: {
      const std::string& city = cities()[pick(rng, static_cast<int>(cities().size()))];
      t.user = "What is the weather in " + city + " right now?";
      t.call = {{"name", "get_weather"}, {"arguments", {{"city", city}}}};
      t.reasoning = "The user asks for the weather in " + city + ", so I call get_weather.";
      break;
    }
    default: {
      std::string w;
      for (int i = 0; i < level; ++i) w += (i ? " " : "") + words()[pick(rng, static_cast<int>(words().size()))];
      t.user = "Reverse the text \"" + w + "\" with the reverse_text tool.";
      t.call = {{"name", "reverse_text"}, {"arguments", {{"text", w}}}};
      t.reasoning = "The user wants \"" + w + "\" reversed, so I call reverse_text.";
      break;
    }
  }
  t.expected = *execute_tool(t.call["name"], t.call["arguments"]);
  return t;
}

nlohmann::ordered_json function_tool(const std::string& name, const std::string& description,
                                     const nlohmann::ordered_json& properties) {
  nlohmann::ordered_json required = nlohmann::ordered_json::array();
  for (auto it = properties.begin(); it != properties.end(); ++it) required.push_back(it.key());
  return {{"type", "function"},
          {"function",
           {{"name", name},
            {"description", description},
            {"parameters", {{"type", "object"}, {"properties", properties}, {"required", required}}}}}};
}

// The last integer written in a text (nullopt if none).
std::optional<long long> last_integer(const std::string& s) {
  std::optional<long long> last;
  for (size_t i = 0; i < s.size();) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    if (j - i <= 15) last = std::stoll(s.substr(i, j - i)) * (i > 0 && s[i - 1] == '-' ? -1 : 1);
    i = j;
  }
  return last;
}

}  // namespace

const std::vector<Domain>& all_domains() {
  static const std::vector<Domain> d = {Domain::math, Domain::code, Domain::agentic};
  return d;
}

const char* domain_name(Domain d) {
  switch (d) {
    case Domain::math: return "math";
    case Domain::code: return "code";
    case Domain::agentic: return "agentic";
  }
  return "?";
}

Domain parse_domain(const std::string& s) {
  for (Domain d : all_domains())
    if (s == domain_name(d)) return d;
  fail("unknown domain '", s, "' (domains: math, code, agentic)");
}

const nlohmann::ordered_json& agent_tools() {
  static const nlohmann::ordered_json tools = nlohmann::ordered_json::array(
      {function_tool("add", "Add two integers.", {{"a", {{"type", "integer"}}}, {"b", {{"type", "integer"}}}}),
       function_tool("multiply", "Multiply two integers.", {{"a", {{"type", "integer"}}}, {"b", {{"type", "integer"}}}}),
       function_tool("get_weather", "The current weather in a city.", {{"city", {{"type", "string"}}}}),
       function_tool("reverse_text", "The text written backwards.", {{"text", {{"type", "string"}}}})});
  return tools;
}

std::optional<std::string> execute_tool(const std::string& name, const nlohmann::json& args) {
  if (!args.is_object()) return std::nullopt;
  auto integer = [&](const char* k) -> std::optional<long long> {
    if (!args.contains(k) || !args[k].is_number_integer()) return std::nullopt;
    return args[k].get<long long>();
  };
  auto text = [&](const char* k) -> std::optional<std::string> {
    if (!args.contains(k) || !args[k].is_string()) return std::nullopt;
    return args[k].get<std::string>();
  };
  if ((name == "add" || name == "multiply") && args.size() == 2) {
    const auto a = integer("a"), b = integer("b");
    constexpr long long kMax = 1000000000;  // the products stay far from overflow
    if (!a || !b || std::llabs(*a) > kMax || std::llabs(*b) > kMax) return std::nullopt;
    return str(name == "add" ? *a + *b : *a * *b);
  }
  if (name == "get_weather" && args.size() == 1) {
    const auto city = text("city");
    if (!city || city->empty()) return std::nullopt;
    // A fixed, deterministic "weather service".
    static const char* kinds[] = {"sunny", "cloudy", "rainy", "windy"};
    size_t h = 0;
    for (char c : *city) h = h * 31 + static_cast<unsigned char>(c);
    return std::string(kinds[h % 4]) + ", " + str(static_cast<long long>(5 + h % 25)) + " C";
  }
  if (name == "reverse_text" && args.size() == 1) {
    const auto t = text("text");
    if (!t) return std::nullopt;
    return std::string(t->rbegin(), t->rend());
  }
  return std::nullopt;
}

Task make_task(Domain d, std::mt19937_64& rng, int level) {
  DSV4_CHECK(level >= 1 && level <= kMaxLevel, "task level ", level, " is not in [1, ", kMaxLevel, "]");
  switch (d) {
    case Domain::math: return math_task(rng, level);
    case Domain::code: return code_task(rng, level);
    case Domain::agentic: return agentic_task(rng, level);
  }
  fail("unknown domain");
}

Task task_at(Domain d, uint64_t seed, int i, int level) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i) * 2654435761ULL + static_cast<int>(d));
  // The split for this task only, whatever make_task throws.
  struct Scope {
    explicit Scope(Split s) { split = s; }
    ~Scope() { split = Split::sft; }
  } scope(seed >= kEvalSeeds ? Split::eval : seed >= kRlSeeds ? Split::rl : Split::sft);
  return make_task(d, rng, level);
}

double check_answer(const Task& t, const chat::ParsedMessage& m) {
  switch (t.domain) {
    case Domain::math: {
      if (!m.tool_calls.empty()) return 0;
      const auto v = last_integer(m.content);
      return v && str(*v) == t.expected ? 1 : 0;
    }
    case Domain::code: {
      // The last `quoted` span is the answer (listing several candidates does not pass).
      const size_t close = m.content.rfind('`');
      const size_t open = close == std::string::npos || close == 0 ? std::string::npos : m.content.rfind('`', close - 1);
      return m.tool_calls.empty() && open != std::string::npos &&
                     m.content.compare(open + 1, close - open - 1, t.expected) == 0 && close - open - 1 == t.expected.size()
                 ? 1
                 : 0;
    }
    case Domain::agentic: {
      if (m.tool_calls.size() != 1) return 0;
      nlohmann::json args;
      try {
        args = parse_json(m.tool_calls[0].arguments);
      } catch (const std::exception&) {
        return 0;
      }
      // The call asked for (another call with the same result, add(7, 0) for add(3, 4), is not),
      // and it must run. The arguments compare as plain JSON objects, whose key order does not count.
      const auto result = execute_tool(m.tool_calls[0].name, args);
      const bool asked = m.tool_calls[0].name == t.call["name"] && args == nlohmann::json(t.call["arguments"]);
      return result && *result == t.expected && asked ? 1 : 0;
    }
  }
  return 0;
}

namespace {

chat::EncodeOptions options(bool thinking) {
  chat::EncodeOptions o;
  o.thinking_mode = thinking ? chat::ThinkingMode::thinking : chat::ThinkingMode::chat;
  o.reasoning_effort = thinking ? chat::ReasoningEffort::high : chat::ReasoningEffort::none;
  return o;
}

nlohmann::ordered_json user_messages(const Task& t) {
  nlohmann::ordered_json m = nlohmann::ordered_json::array({{{"role", "user"}, {"content", t.user}}});
  return t.tools.empty() ? m : chat::attach_tools(m, t.tools);
}

}  // namespace

std::string render_task_prompt(const Task& t, bool thinking) {
  return chat::encode_messages(user_messages(t), options(thinking));
}

RenderedTask render_task(const Task& t, bool thinking) {
  nlohmann::ordered_json messages = user_messages(t);
  const std::string prompt = chat::encode_messages(messages, options(thinking));
  nlohmann::ordered_json answer = {{"role", "assistant"}, {"content", t.answer}};
  if (thinking) answer["reasoning_content"] = t.reasoning;
  if (t.domain == Domain::agentic)
    answer["tool_calls"] = nlohmann::ordered_json::array(
        {{{"type", "function"},
          {"function", {{"name", t.call["name"]}, {"arguments", t.call["arguments"].dump()}}}}});
  messages.push_back(answer);
  const std::string full = chat::encode_messages(messages, options(thinking));
  DSV4_CHECK(full.compare(0, prompt.size(), prompt) == 0, "the rendered task does not extend its prompt");
  return {prompt, full.substr(prompt.size())};
}

}  // namespace dsv4
