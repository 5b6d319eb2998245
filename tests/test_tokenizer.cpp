// The tokenizer against ../shared/tokenizer/expected.json (ids from Hugging Face's
// transformers.js for a real DeepSeek tokenizer.json; exact), decode(encode(s)) == s, the
// incremental decoder never splitting a UTF-8 character, and bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"
#include "test_util.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv4 {
namespace {

const Tokenizer& deepseek() {
  static const Tokenizer t = Tokenizer::load(test::shared_dir() + "/tokenizer/deepseek-v3/tokenizer.json");
  return t;
}

std::string ids_str(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += std::to_string(x) + ",";
  return s;
}

TEST(Tokenizer, ReproducesExpectedIds) {
  const auto cases = nlohmann::json::parse(test::read_file(test::shared_dir() + "/tokenizer/expected.json"));
  int n = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int> want = c.at("ids").get<std::vector<int>>();
    const std::vector<int> got = deepseek().encode(text);
    EXPECT_EQ(ids_str(got), ids_str(want)) << "text: " << text;
    EXPECT_EQ(deepseek().decode(got), text);
    ++n;
  }
  EXPECT_GT(n, 50);
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

TEST(Tokenizer, RoundTripsRandomText) {
  // Random mixtures of ASCII, CJK, emoji, combining marks and special tokens.
  const std::vector<std::string> alphabet = {"a", "Z", " ", "  ", "\n", "\t", "1", "23", ".", "!?", "中", "語",
                                             "한", "é", "e\xCC\x81", "😀", "👍🏽", "—", "<", "｜", "<｜User｜>",
                                             "<｜end▁of▁sentence｜>", "<think>", "\r\n"};
  std::mt19937 rng(42);
  for (int it = 0; it < 300; ++it) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    EXPECT_EQ(deepseek().decode(deepseek().encode(s)), s) << s;
  }
}

TEST(Tokenizer, SpecialTokensAreSingleIds) {
  const std::vector<int> ids = deepseek().encode("<｜begin▁of▁sentence｜>hi<｜User｜>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), deepseek().special_id("<｜User｜>"));
  EXPECT_EQ(deepseek().special_id("no such token"), -1);
}

TEST(Tokenizer, IncrementalDecoderNeverSplitsACharacter) {
  // Emoji and CJK span several byte-level tokens; every chunk pushed out must be valid UTF-8
  // and the chunks together must be the text.
  const std::string text = "Emoji 😀👍🏽🚀 中文测试：深度求索 ß—…";
  IncrementalDecoder dec(deepseek());
  std::string all;
  for (int id : deepseek().encode(text)) {
    const std::string piece = dec.push(id);
    EXPECT_EQ(utf8_invalid_at(piece), std::string::npos) << "piece splits a character";
    all += piece;
  }
  all += dec.flush();
  EXPECT_EQ(all, text);
}

TEST(Tokenizer, IncrementalDecoderFlushReplacesStrayBytes) {
  IncrementalDecoder dec(deepseek());
  const std::vector<int> ids = deepseek().encode("😀");
  ASSERT_GT(ids.size(), 1u);  // the emoji is more than one byte-level token
  EXPECT_EQ(dec.push(ids[0]), "");
  std::string want;
  for (size_t i = 0; i < deepseek().token_bytes(ids[0]).size(); ++i) want += "\xEF\xBF\xBD";
  EXPECT_EQ(dec.flush(), want);
}

TEST(Tokenizer, IncrementalDecoderOutputIsAlwaysValidUtf8) {
  // Random ids decode to arbitrary bytes; what the decoder emits must still be valid UTF-8.
  std::mt19937 rng(9);
  IncrementalDecoder dec(deepseek());
  for (int i = 0; i < 2000; ++i) {
    const std::string piece = dec.push(static_cast<int>(rng() % 128000));
    ASSERT_EQ(utf8_invalid_at(piece), std::string::npos) << "after " << i << " ids";
  }
  EXPECT_EQ(utf8_invalid_at(dec.flush()), std::string::npos);
}

TEST(Tokenizer, BadInput) {
  EXPECT_THROW(deepseek().encode("abc\xFF"), Error);
  EXPECT_THROW(deepseek().encode("\xC3"), Error);  // truncated sequence
  EXPECT_THROW(deepseek().decode({5, 1 << 30}), Error);
  EXPECT_THROW(deepseek().decode({-1}), Error);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), Error);
  EXPECT_THROW(Tokenizer::from_json("{", "x"), Error);
  EXPECT_THROW(Tokenizer::from_json(R"({"model": {"type": "Unigram"}})", "x"), Error);
  // Ids that are floats beyond int's range (undefined behaviour in the conversion: fuzz_tokenizer_json)
  // or too large to size an id table by.
  std::string json = byte_level_tokenizer_json();
  for (const std::string id : {"3.3e67", "2147483648", "-4", "1.5"}) {
    std::string bad = json;
    const size_t at = bad.find("\"id\": 0");
    ASSERT_NE(at, std::string::npos);
    bad.replace(at, 7, "\"id\": " + id);
    try {
      (void)Tokenizer::from_json(bad, "t.json");
      ADD_FAILURE() << id;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not an integer in [0, 16777216)"), std::string::npos) << e.what();
    }
  }
  try {
    deepseek().encode("ok\xE2\x82");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte 2"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, CommandEncodesAndDecodesJsonLines) {
  test::TempDir d;
  test::write_file(d.file("in.jsonl"), "\"Hello, world!\"\n\"中文\"\n");
  const std::string tok = test::shared_dir() + "/tokenizer/deepseek-v3/tokenizer.json";
  auto r = test::run_command(test::dsv4_binary() + " tokenize -t " + tok + " < " + d.file("in.jsonl"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.substr(0, r.output.find('\n')), "[19923,14,2058,3]");
  test::write_file(d.file("ids.jsonl"), r.output);
  r = test::run_command(test::dsv4_binary() + " tokenize --decode -t " + tok + " < " + d.file("ids.jsonl"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "\"Hello, world!\"\n\"中文\"\n");
  test::write_file(d.file("bad.jsonl"), "\"fine\"\n[1, 2\n");
  r = test::run_command(test::dsv4_binary() + " tokenize -t " + tok + " < " + d.file("bad.jsonl"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("stdin line 2"), std::string::npos) << r.output;
  test::write_file(d.file("bad.jsonl"), "[1, 99999999]\n");
  r = test::run_command(test::dsv4_binary() + " tokenize --decode -t " + tok + " < " + d.file("bad.jsonl"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("outside the vocabulary"), std::string::npos) << r.output;
}

TEST(TrainBpe, LearnsFrequentWordsAndRoundTrips) {
  std::string corpus;
  for (int i = 0; i < 40; ++i)
    corpus += "The cat sat on the mat. The dog sat on the log. Then the cat and the dog slept. " + std::to_string(i) + "\n";
  const auto merges = train_bpe(corpus, 20);
  ASSERT_EQ(merges.size(), 20u);
  EXPECT_EQ(merges, train_bpe(corpus, 20)) << "training is deterministic";
  // The corpus's pieces hold only so many pairs seen twice: training stops there.
  EXPECT_LT(train_bpe(corpus, 1000).size(), 1000u);
  // The first merge is the most frequent pair of the corpus's pieces (" t" / "he" kind).
  const Tokenizer t = Tokenizer::from_json(byte_level_tokenizer_json(merges), "trained");
  EXPECT_EQ(t.vocab_size(), static_cast<int>(v4_special_tokens().size()) + 256 + 20);
  EXPECT_EQ(t.special_id("<｜begin▁of▁sentence｜>"), 0);
  EXPECT_EQ(t.special_id("<｜end▁of▁sentence｜>"), 1);
  // Frequent words become one token; the corpus needs far fewer tokens than bytes.
  EXPECT_EQ(t.encode(" the").size(), 1u);
  EXPECT_EQ(t.encode(" cat").size(), 1u);
  EXPECT_LT(t.encode(corpus).size(), corpus.size() / 2);
  // Any text round-trips, also what training never saw (other scripts, control bytes, specials).
  for (const std::string& text : {corpus, std::string("Zebras! ünïcödé 日本語 \t\x01 <｜User｜>hi</think>")})
    EXPECT_EQ(t.decode(t.encode(text)), text);
  // Pairs seen fewer than min_count times are never merged.
  EXPECT_TRUE(train_bpe("abcdefgh", 10, 2).empty());
  EXPECT_FALSE(train_bpe("abcdefgh", 10, 1).empty());
}

// Text that is not UTF-8 never reaches PCRE2 (which runs without its own check): before,
// `dsv4 train-tokenizer` on such text crashed. Every byte offset of a bad byte is named.
TEST(TrainBpe, TextThatIsNotUtf8IsRefused) {
  for (const std::string& bad : {std::string("hello \xff\xfe world"), std::string("ab\xc3"), std::string("\xe6\x97 x")}) {
    EXPECT_THROW(train_bpe(bad, 10), Error) << bad;
    const Tokenizer base = Tokenizer::from_json(byte_level_tokenizer_json(), "byte-level");
    try {
      (void)base.pretokenize(bad);
      ADD_FAILURE() << "no error for " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at byte " + std::to_string(utf8_invalid_at(bad))),
                std::string::npos) << e.what();
    }
  }
  test::TempDir d;
  test::write_file(d.file("bad.txt"), "fine text\nthen \x80 a stray byte\n");
  const auto r = test::run_command(test::dsv4_binary() + " train-tokenizer --text-file " + d.file("bad.txt") + " -o " +
                                   d.file("t.json") + " --vocab-size 300");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("bad.txt: not UTF-8 text (an invalid byte at offset 15)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace dsv4
