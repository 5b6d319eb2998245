// Task generators (each returns user text, worked reasoning and answer, all computed) and the
// rendering of each conversation with chat/encode in a reasoning mode drawn per example.
#include "train/chat_data.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "chat/encode.h"
#include "core/check.h"

namespace dsv4 {

namespace {

struct Task {
  std::string user, reasoning, answer;
};

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

Task make_task(std::mt19937_64& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  static const std::vector<std::string> words = {"garden", "river", "window", "planet", "silver", "market",
                                                 "candle", "forest", "letter", "bridge", "summer", "pencil"};
  switch (pick(6)) {
    case 0: {
      static const std::vector<std::pair<std::string, std::string>> talk = {
          {"Hello!", "Hello! How can I help you today?"},
          {"Hi, who are you?", "I am a small DeepSeek-V4 model trained by dsv4. How can I help?"},
          {"Thank you.", "You are welcome."},
          {"Good morning!", "Good morning! What would you like to talk about?"},
          {"Can you help me?", "Of course. Tell me what you need."}};
      const auto& [u, a] = talk[pick(static_cast<int>(talk.size()))];
      return {u, "The user is greeting me or asking for help, so I answer politely.", a};
    }
    case 1: {  // addition with the carries written out
      const int a = 10 + pick(90), b = 10 + pick(90), ones = a % 10 + b % 10;
      const std::string r = "Ones: " + std::to_string(a % 10) + " + " + std::to_string(b % 10) + " = " +
                            std::to_string(ones) + (ones >= 10 ? ", write " + std::to_string(ones % 10) + " and carry 1" : "") +
                            ". Tens: " + std::to_string(a / 10) + " + " + std::to_string(b / 10) +
                            (ones >= 10 ? " + 1" : "") + " = " + std::to_string(a / 10 + b / 10 + (ones >= 10)) +
                            ". So the sum is " + std::to_string(a + b) + ".";
      return {"What is " + std::to_string(a) + " + " + std::to_string(b) + "?", r,
              std::to_string(a) + " + " + std::to_string(b) + " = " + std::to_string(a + b) + "."};
    }
    case 2: {  // subtraction, larger minus smaller
      int a = 10 + pick(90), b = 10 + pick(90);
      if (a < b) std::swap(a, b);
      return {"What is " + std::to_string(a) + " - " + std::to_string(b) + "?",
              std::to_string(b) + " + " + std::to_string(a - b) + " = " + std::to_string(a) + ", so the difference is " +
                  std::to_string(a - b) + ".",
              std::to_string(a) + " - " + std::to_string(b) + " = " + std::to_string(a - b) + "."};
    }
    case 3: {  // comparison
      int a = pick(1000), b = pick(1000);
      if (a == b) ++b;
      const int big = std::max(a, b), small = std::min(a, b);
      return {"Which is larger, " + std::to_string(a) + " or " + std::to_string(b) + "?",
              "Compare " + std::to_string(a) + " and " + std::to_string(b) + ": " + std::to_string(big) +
                  " is more than " + std::to_string(small) + ".",
              std::to_string(big) + " is larger."};
    }
    case 4: {  // sorting
      std::vector<int> v(4 + pick(3));
      for (int& x : v) x = pick(100);
      std::vector<int> s = v;
      std::sort(s.begin(), s.end());
      return {"Sort these numbers from smallest to largest: " + join(v) + ".",
              "The smallest is " + std::to_string(s.front()) + " and the largest is " + std::to_string(s.back()) +
                  "; in between, in order: " + join(s) + ".",
              join(s)};
    }
    default: {  // spelling backwards
      const std::string& w = words[pick(static_cast<int>(words.size()))];
      std::string r(w.rbegin(), w.rend()), letters;
      for (size_t i = 0; i < w.size(); ++i) letters += std::string(i ? "-" : "") + w[w.size() - 1 - i];
      return {"Spell the word \"" + w + "\" backwards.", "Reading the letters from the end: " + letters + ".",
              "\"" + w + "\" backwards is \"" + r + "\"."};
    }
  }
}

}  // namespace

std::vector<ChatExample> make_chat_examples(int count, uint64_t seed) {
  DSV4_CHECK(count >= 0, "the number of examples must be >= 0");
  std::mt19937_64 rng(seed);
  std::vector<ChatExample> out;
  for (int i = 0; i < count; ++i) {
    const Task t = make_task(rng);
    const int m = static_cast<int>(rng() % 3);
    chat::EncodeOptions o;
    o.thinking_mode = m == 0 ? chat::ThinkingMode::chat : chat::ThinkingMode::thinking;
    o.reasoning_effort = m == 2 ? chat::ReasoningEffort::max : m == 1 ? chat::ReasoningEffort::high : chat::ReasoningEffort::none;
    nlohmann::ordered_json messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", t.user}}});
    const std::string prompt = chat::encode_messages(messages, o);
    nlohmann::ordered_json answer = {{"role", "assistant"}, {"content", t.answer}};
    if (m != 0) answer["reasoning_content"] = t.reasoning;
    messages.push_back(answer);
    const std::string full = chat::encode_messages(messages, o);
    DSV4_CHECK(full.compare(0, prompt.size(), prompt) == 0, "the rendered conversation does not extend its prompt");
    out.push_back({m == 0 ? "non-think" : m == 1 ? "think-high" : "think-max", t.user, m == 0 ? "" : t.reasoning,
                   t.answer, prompt, full.substr(prompt.size())});
  }
  return out;
}

}  // namespace dsv4
