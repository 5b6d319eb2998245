// The committed default model (models/dsv4-tiny, see its MODEL_CARD.md): it loads, its
// held-out perplexity on Brown text it never trained on is what the model card reports, and
// its chat answers are English-like text, not noise.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace dsv4 {
namespace {

const std::string kModel = std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny";

TEST(DefaultModel, HeldOutPerplexityIsTheModelCards) {
  const test::RunResult r = test::run_command(std::string(DSV4_BINARY) + " perplexity -m " + kModel + " --text-file " +
                                              DSV4_SOURCE_DIR + "/tests/data/brown-held-sample.txt --ctx 256 --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output.substr(r.output.rfind('{')));
  std::printf("default model on the held-out Brown sample: %lld tokens, perplexity %.2f\n",
              j["tokens"].get<long long>(), j["ppl"].get<double>());
  EXPECT_GT(j["tokens"].get<long long>(), 8000);
  EXPECT_NEAR(j["ppl"].get<double>(), 140.25, 1.5);  // MODEL_CARD.md
}

TEST(DefaultModel, ChatAnswersAreEnglishLike) {
  // Greedy answers in both reasoning modes: words of letters separated by spaces, no stray
  // bytes; every answer at least a few words.
  int letters = 0, spaces = 0, other = 0;
  for (const char* prompt : {"Who are you?", "Tell me about the weather today.", "Can you help me?"})
    for (const char* mode : {"none", "high"}) {
      // The answer alone (stdout): the subshell keeps the loading and speed lines out.
      const test::RunResult r = test::run_command("(" + std::string(DSV4_BINARY) + " run -m " + kModel + " -p \"" +
                                                  prompt + "\" --temperature 0 -n 48 --reasoning " + mode + " 2>/dev/null)");
      ASSERT_EQ(r.status, 0) << r.output;
      std::printf("%s [%s]: %s", prompt, mode, r.output.c_str());
      int words = 0;
      bool in_word = false;
      for (unsigned char ch : r.output) {
        const bool letter = std::isalpha(ch);
        letters += letter, spaces += ch == ' ';
        if (!letter && ch != ' ' && ch != '\n' && !std::isdigit(ch) && !std::ispunct(ch)) ++other;
        words += letter && !in_word;
        in_word = letter;
      }
      EXPECT_GE(words, 3) << prompt << ": " << r.output;
    }
  EXPECT_GT(letters, 200);
  EXPECT_GT(spaces, 40);
  EXPECT_EQ(other, 0);
}

}  // namespace
}  // namespace dsv4
