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
  for (const char* mode : {"none", "high"}) {
    const test::RunResult r = test::run_command(std::string(DSV4_BINARY) + " run -m " + kModel +
                                                " -p \"Tell me about the weather today.\" --temperature 0 -n 48 --reasoning " +
                                                mode + " 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.output;
    int letters = 0, spaces = 0, other = 0;
    for (unsigned char ch : r.output) {
      if (std::isalpha(ch)) ++letters;
      else if (ch == ' ') ++spaces;
      else if (!std::isdigit(ch) && !std::ispunct(ch) && ch != '\n') ++other;
    }
    std::printf("reasoning %s: %s\n", mode, r.output.c_str());
    EXPECT_GT(letters, 60) << r.output;
    EXPECT_GT(spaces, 8) << r.output;                     // words, not one run of bytes
    EXPECT_LT(other, letters / 10 + 1) << r.output;       // no control bytes or broken UTF-8 noise
  }
}

}  // namespace
}  // namespace dsv4
