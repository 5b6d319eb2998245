// Constrained decoding (src/grammar, runtime/output_constraint.h): schemas compile or are
// refused by name; the matcher takes valid documents and refuses invalid ones byte by byte;
// random walks through the matcher always end in documents that parse and validate; the trie's
// token mask equals feeding every token alone; and the default model, sampling at temperature
// 1 under a set of schemas, only ever answers with documents that parse and validate.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <cmath>
#include <random>

#include "core/check.h"
#include "grammar/json_matcher.h"
#include "grammar/json_schema.h"
#include "grammar/vocab_trie.h"
#include "runtime/chat_prompt.h"
#include "runtime/engine.h"
#include "runtime/output_constraint.h"
#include "test_util.h"

namespace dsv4 {
namespace {

using json = nlohmann::json;

const std::string kModel = std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny";

// ---- an independent validator of the supported subset (the test's reference) ----

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

bool has_type(const json& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  return false;
}

bool validates(const json& s, const json& v) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("const") && v != s["const"]) return false;
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) return false;
  if (s.contains("anyOf")) {
    bool any = false;
    for (const auto& b : s["anyOf"]) any = any || validates(b, v);
    if (!any) return false;
  }
  if (s.contains("type")) {
    bool ok = false;
    if (s["type"].is_string()) ok = has_type(v, s["type"]);
    else
      for (const auto& t : s["type"]) ok = ok || has_type(v, t);
    if (!ok) return false;
  }
  if (v.is_object()) {
    const json props = s.value("properties", json::object());
    for (const auto& r : s.value("required", json::array()))
      if (!v.contains(r.get<std::string>())) return false;
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (!validates(props[k], x)) return false;
      } else if (s.contains("additionalProperties")) {
        if (!validates(s["additionalProperties"], x)) return false;
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return false;
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return false;
    if (s.contains("items"))
      for (const auto& x : v)
        if (!validates(s["items"], x)) return false;
  }
  if (v.is_string()) {
    const size_t n = code_points(v.get<std::string>());
    if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return false;
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return false;
  }
  return true;
}

// The schemas the sampled generations use: nested objects, arrays, enums, numbers, required keys.
std::vector<json> schemas() {
  return {
      json::parse(R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                      "age": {"type": "integer"}, "email": {"type": ["string", "null"], "maxLength": 30}},
                      "required": ["name", "age"], "additionalProperties": false})"),
      json::parse(R"({"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue", 7, null]},
                      "sizes": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4},
                      "ok": {"type": "boolean"}}, "required": ["colour", "sizes", "ok"]})"),
      json::parse(R"({"type": "object", "properties": {"order": {"type": "object", "properties": {
                        "id": {"type": "integer"}, "lines": {"type": "array", "maxItems": 3, "items": {
                          "type": "object", "properties": {"sku": {"type": "string", "minLength": 1, "maxLength": 8},
                          "qty": {"type": "integer"}}, "required": ["sku", "qty"]}}},
                        "required": ["id", "lines"]},
                      "note": {"anyOf": [{"type": "string", "maxLength": 12}, {"type": "null"}]}},
                      "required": ["order"]})"),
      json::parse(R"({"type": "array", "items": {"type": "object", "properties": {
                      "k\"ey": {"const": "v"}, "n": {"type": "number"}}, "required": ["k\"ey"]}, "maxItems": 3})"),
      json::parse(R"({"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no", "maybe"]},
                      "confidence": {"type": "number"}, "tags": {"type": "array", "maxItems": 3,
                      "items": {"type": "string", "maxLength": 10}}}, "required": ["answer", "confidence", "tags"]})"),
  };
}

bool accepts(const JsonSchema& s, std::string_view text) {
  JsonMatcher m(s);
  return m.feed(text) && m.can_end();
}

// ---- schemas ----

TEST(JsonSchema, RefusesWhatItCannotEnforceByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type": "string", "pattern": "^a"})", "'pattern'"},
      {R"({"$ref": "#/x"})", "'$ref'"},
      {R"({"type": "integer", "minimum": 3})", "'minimum'"},
      {R"({"type": "string", "format": "date"})", "'format'"},
      {R"({"anyOf": [{"type": "object"}, {"type": "object", "properties": {}}]})", "two branches can start with '{'"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "required names 'b'"},
      {R"({"type": "thing"})", "'thing' is not a JSON Schema type"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "maxItems": 2}}})", "schema.properties.a: 'maxItems'"},
      {R"({"type": "array", "minItems": 3, "maxItems": 2})", "maxItems < minItems"},
      {R"(false)", "allows no value"},
      {R"({"const": "a </think> b"})", "spells a chat-format marker"},
      {R"({"type": "object", "properties": {"<｜x": {}}})", "the key \"<｜x\" spells a chat-format marker"},
      {R"({"type": "integer", "const": 1.5})", "no value of enum / const is of the type"},
  };
  for (const auto& [schema, want] : cases) {
    try {
      JsonSchema::compile(json::parse(schema));
      ADD_FAILURE() << schema << " compiled";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << schema << ": " << e.what();
    }
  }
  for (const json& s : schemas()) EXPECT_NO_THROW(JsonSchema::compile(s));
}

// ---- the matcher ----

TEST(JsonMatcher, TakesValidDocumentsAndRefusesInvalidOnes) {
  const auto person = JsonSchema::compile(schemas()[0]);
  EXPECT_TRUE(accepts(*person, R"({"name": "Ann", "age": 3})"));
  EXPECT_TRUE(accepts(*person, "{\n  \"age\": -12,\n  \"email\": null,\n  \"name\": \"\\u00e9\\n\xc3\xa9\"\n}\n"));
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann"})"));                   // required age missing
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann", "age": 3, "x": 1})"));  // undeclared key
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann", "name": "B", "age": 3})"));  // a key twice
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann", "age": 3.5})"));       // integer
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann", "age": 03})"));        // leading zero
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann", "age": 3,})"));        // trailing comma
  EXPECT_FALSE(accepts(*person, R"({"name": "\ud800", "age": 3})"));      // a lone surrogate
  EXPECT_FALSE(accepts(*person, "{\"name\": \"a\tb\", \"age\": 3}"));     // a raw control character
  EXPECT_FALSE(accepts(*person, "{\"name\": \"\xc0\xaf\", \"age\": 3}"));  // overlong UTF-8
  EXPECT_FALSE(accepts(*person, "{\"name\": \"\xed\xa0\x80\", \"age\": 3}"));  // an encoded surrogate
  EXPECT_FALSE(accepts(*person, R"({"name": "0123456789012345678901234", "age": 3})"));  // maxLength 24
  EXPECT_FALSE(accepts(*person, R"({"name": "Ann", "age": 3} x)"));

  const auto lits = JsonSchema::compile(json::parse(R"({"enum": [1, 12, "a", true]})"));
  for (const char* ok : {"1", "12", "\"a\"", "true", " 12 "}) EXPECT_TRUE(accepts(*lits, ok)) << ok;
  for (const char* no : {"2", "123", "\"b\"", "tru", "\"a"}) EXPECT_FALSE(accepts(*lits, no)) << no;

  const auto any = JsonSchema::any_object();
  EXPECT_TRUE(accepts(*any, R"({"a": [1, -0.5e+10, {"b": null}, "x", false], "": {}})"));
  EXPECT_FALSE(accepts(*any, "[1]"));  // json_object: an object
  EXPECT_FALSE(accepts(*any, R"({"a": 1.})"));
  EXPECT_FALSE(accepts(*any, R"({"a": .5})"));
  EXPECT_FALSE(accepts(*any, R"({"a": 1e})"));
  EXPECT_FALSE(accepts(*any, R"({"a": 12345678901234567})"));  // kMaxDigits
  EXPECT_FALSE(accepts(*any, "{" + std::string(JsonMatcher::kMaxWhitespace + 1, ' ') + "}"));
  EXPECT_TRUE(accepts(*any, "{" + std::string(JsonMatcher::kMaxWhitespace, ' ') + "}"));
  EXPECT_TRUE(accepts(*any, "{\r\n    \"a\": 1\n}"));
  EXPECT_FALSE(accepts(*any, "{\n\n\"a\": 1}"));  // a blank line

  // A type beside enum keeps the values of that type.
  const auto typed = JsonSchema::compile(json::parse(R"({"type": "string", "enum": ["a", 1]})"));
  EXPECT_TRUE(accepts(*typed, "\"a\""));
  EXPECT_FALSE(accepts(*typed, "1"));

  // No string spells a chat-format marker, which the chat parser would act on.
  for (const char* no : {R"({"a": "</think>"})", R"({"a": "x<think>"})", R"({"a": "<｜end"})", R"({"a": "</｜"})",
                         R"({"a": "｜DSML"})", R"({"</think>": 1})"})
    EXPECT_FALSE(accepts(*any, no)) << no;
  for (const char* ok : {R"({"a": "a < b, </thin k>"})", R"({"a": "｜DSM L", "b": "<"})", R"({"a": "\u003cthink>"})"})
    EXPECT_TRUE(accepts(*any, ok)) << ok;

  const auto number = JsonSchema::compile(json::parse(R"({"type": "number"})"));
  JsonMatcher m(*number);
  EXPECT_TRUE(m.feed("-1.5e3"));
  EXPECT_TRUE(m.can_end());  // a number at the top ends with the text
}

// Random walks through the matcher: at each byte, one the matcher allows (closing bytes
// favoured so walks end); whatever it accepts as whole must parse and validate.
std::string random_walk(const JsonSchema& s, std::mt19937& rng) {
  JsonMatcher m(s);
  std::string out;
  for (int step = 0; step < 20000; ++step) {
    if (m.can_end() && rng() % 4 == 0) return out;
    std::vector<uint8_t> ok, closers;
    for (int b = 0; b < 256; ++b) {
      JsonMatcher c = m;
      if (!c.feed(static_cast<uint8_t>(b))) continue;
      ok.push_back(static_cast<uint8_t>(b));
      if (b == '"' || b == '}' || b == ']' || b == ',') closers.push_back(static_cast<uint8_t>(b));
    }
    if (ok.empty()) {
      EXPECT_TRUE(m.can_end()) << "stuck after " << out;
      return out;
    }
    const std::vector<uint8_t>& from = !closers.empty() && rng() % 3 == 0 ? closers : ok;
    const uint8_t b = from[rng() % from.size()];
    EXPECT_TRUE(m.feed(b));
    out += static_cast<char>(b);
  }
  ADD_FAILURE() << "a walk did not end: " << out.substr(0, 200);
  return out;
}

TEST(JsonMatcher, RandomWalksParseAndValidate) {
  std::mt19937 rng(7);
  std::vector<json> all = schemas();
  all.push_back(json::parse(R"({"type": "object"})"));
  for (const json& schema : all) {
    const auto s = JsonSchema::compile(schema);
    for (int i = 0; i < 300; ++i) {
      const std::string doc = random_walk(*s, rng);
      json v;
      ASSERT_NO_THROW(v = json::parse(doc)) << doc;
      ASSERT_TRUE(validates(schema, v)) << schema.dump() << "\n" << doc;
    }
  }
}

// ---- the trie's mask against every token fed alone ----

TEST(VocabTrie, MaskEqualsEveryTokenFedAlone) {
  const Tokenizer t = Tokenizer::load(kModel + "/tokenizer.json");
  const VocabTrie trie(t);
  std::mt19937 rng(3);
  size_t checked = 0;
  for (const json& schema : schemas()) {
    const auto s = JsonSchema::compile(schema);
    for (int w = 0; w < 10; ++w) {
      const std::string doc = random_walk(*s, rng);
      JsonMatcher m(*s);
      // States along the walk: the empty prefix, then every few bytes.
      for (size_t i = 0; i <= doc.size(); i += 3) {
        JsonMatcher at(*s);
        ASSERT_TRUE(at.feed(std::string_view(doc).substr(0, i)));
        std::vector<uint8_t> got(t.vocab_size(), 0);
        trie.allowed(at, got);
        for (int id = 0; id < t.vocab_size(); ++id) {
          JsonMatcher c = at;
          const bool want = !t.is_added(id) && c.feed(t.token_bytes(id));
          ASSERT_EQ(got[id] != 0, want) << "token " << id << " '" << t.token_bytes(id) << "' after '" << doc.substr(0, i) << "'";
        }
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100u);
}

// DeepSeek's 129K vocabulary, at states that take the free-string fast path (inside strings
// and free keys, after a multi-byte lead, in escapes) and others.
TEST(VocabTrie, MaskEqualsEveryTokenFedAloneOnDeepSeeksVocabulary) {
  const Tokenizer t = Tokenizer::load(test::shared_dir() + "/tokenizer/deepseek-v3/tokenizer.json");
  const VocabTrie trie(t);
  const auto schema = JsonSchema::compile(schemas()[0]);
  const auto any = JsonSchema::any_object();
  const std::vector<std::pair<const JsonSchema*, std::string>> states = {
      {schema.get(), ""}, {schema.get(), "{\"na"}, {schema.get(), "{\"name\": \"The quick"},
      {schema.get(), "{\"name\": \"\xe4"}, {schema.get(), "{\"name\": \"\\"}, {schema.get(), "{\"name\": \"\\u00"},
      {any.get(), "{\""}, {any.get(), "{\"k\": \"v"}, {any.get(), "{\"k\": \"\xf0\x9f"}, {any.get(), "{\"k\": 1"},
      {any.get(), "{\"k\": \"a</"}, {any.get(), "{\"k\": \"｜DS"}, {any.get(), "{\"k\": \"x<thin"}};
  for (const auto& [s, prefix] : states) {
    JsonMatcher at(*s);
    ASSERT_TRUE(at.feed(prefix)) << prefix;
    std::vector<uint8_t> got(t.vocab_size(), 0);
    trie.allowed(at, got);
    size_t n = 0;
    for (int id = 0; id < t.vocab_size(); ++id) {
      JsonMatcher c = at;
      const bool want = !t.is_added(id) && c.feed(t.token_bytes(id));
      ASSERT_EQ(got[id] != 0, want) << "token " << id << " after '" << prefix << "'";
      n += want;
    }
    std::printf("after '%s': %zu tokens allowed\n", prefix.c_str(), n);
  }
}

// In the reasoning, ordinary tokens that would spell "</think>" as text are refused (the chat
// parser would end the reasoning there, unconstrained); the special token ends it.
TEST(OutputConstraint, ReasoningEndsOnlyWithTheThinkEndToken) {
  const Tokenizer t = Tokenizer::load(kModel + "/tokenizer.json");
  const VocabTrie trie(t);
  const int eos = t.special_id("<｜end▁of▁sentence｜>"), think_end = t.special_id("</think>");
  ASSERT_GE(think_end, 0);
  OutputConstraint c(JsonSchema::any_object(), trie, t, eos, think_end);
  EXPECT_FALSE(c.allows(eos));  // the reasoning cannot be the whole answer
  for (const int id : t.encode("Let me see: a < b, and </thin")) {
    ASSERT_TRUE(c.allows(id)) << t.token_bytes(id);
    c.took(id);
  }
  const std::vector<int> k = t.encode("k"), gt = t.encode(">");
  ASSERT_EQ(k.size(), 1u);
  ASSERT_EQ(gt.size(), 1u);
  ASSERT_TRUE(c.allows(k[0]));
  c.took(k[0]);
  EXPECT_FALSE(c.allows(gt[0]));  // "</think" + ">" would be the text of the end
  EXPECT_FALSE(c.allows(t.encode(">>")[0]));  // whichever token starts ">>" starts with '>'
  EXPECT_TRUE(c.allows(t.encode("x")[0]));
  c.took(t.encode("x")[0]);
  const std::vector<int> lt = t.encode("<"), bar = t.encode("｜");
  ASSERT_EQ(lt.size(), 1u);
  c.took(lt[0]);
  EXPECT_FALSE(c.allows(bar[0]));  // "<｜" as text: the parser would read a special token there
  EXPECT_TRUE(c.allows(think_end));
  c.took(think_end);
  ASSERT_TRUE(c.answering());
  std::vector<float> logits(t.vocab_size(), 0.0f);
  c.apply(logits);
  EXPECT_TRUE(c.allows(t.encode("{")[0]));
  EXPECT_FALSE(c.allows(gt[0]));
  EXPECT_FALSE(c.allows(eos));  // nothing whole yet
  EXPECT_EQ(logits[gt[0]], -INFINITY);
}

// ---- the default model sampling under the schemas ----

TEST(ConstrainedDecoding, SampledAnswersAlwaysParseAndValidate) {
  Engine e(kModel);
  const std::vector<json> all = schemas();
  // A few hundred in all; a few per schema under a sanitizer (.ci/sanitizers sets DSV4_SANITIZER).
  const int per_schema = std::getenv("DSV4_SANITIZER") ? 4 : 60;
  int finished = 0, total = 0, tokens = 0;
  for (size_t k = 0; k < all.size(); ++k) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    messages.push_back({{"role", "system"}, {"content", "Answer in JSON."},
                        {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", all[k]}}}}}});
    messages.push_back({{"role", "user"}, {"content", "Describe a person and an order."}});
    for (int i = 0; i < per_schema; ++i) {
      // Every fifth reasons first: the answer follows "</think>".
      const bool think = i % 5 == 4;
      Conversation conv(e);
      GenerateRequest g;
      g.prompt = chat_prompt_tokens(e, messages, nullptr, think ? ReasoningMode::think_high : ReasoningMode::non_think);
      g.sampling.temperature = 1;
      g.sampling.seed = 1000 * k + i;
      g.max_tokens = 700;
      g.format = JsonSchema::compile(all[k]);
      g.answer_after_think = think;
      const GenerateResult r = generate(conv, g);
      ++total;
      tokens += static_cast<int>(r.tokens.size());
      if (!r.hit_eos) continue;  // cut by max_tokens (a long reasoning): not an answer
      ++finished;
      std::string answer = r.text;
      if (think) {
        const size_t at = answer.find("</think>");
        ASSERT_NE(at, std::string::npos) << answer;
        answer = answer.substr(at + 8);
      }
      json v;
      ASSERT_NO_THROW(v = json::parse(answer)) << "schema " << k << " seed " << i << ": " << answer;
      ASSERT_TRUE(validates(all[k], v)) << "schema " << k << " seed " << i << ": " << answer;
    }
  }
  std::printf("%d of %d generations ended by themselves (%d tokens); all parse and validate\n", finished, total, tokens);
  EXPECT_GE(finished, total * 9 / 10);
}

}  // namespace
}  // namespace dsv4
