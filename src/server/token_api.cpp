// The tokenizer over HTTP (token_api.h).
#include "server/token_api.h"

#include "core/check.h"
#include "server/api_request.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

bool flag(const json& j, const char* key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) bad_request(key, std::string("'") + key + "' must be a boolean, got " + j[key].dump());
  return j[key].get<bool>();
}

std::string text_field(const json& j, const char* key) {
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && v.size() == 1 && v[0].is_string()) return v[0].get<std::string>();
  bad_request(key, std::string("'") + key + "' must be a string");
}

// A token's bytes as text when they are whole UTF-8, else as the byte values (llama-server's
// convention), so a piece in the middle of a character is not mangled.
json piece(const Tokenizer& t, int id) {
  const std::string bytes = t.token_bytes(id);
  if (utf8_invalid_at(bytes) == std::string_view::npos) return bytes;
  json out = json::array();
  for (unsigned char c : bytes) out.push_back(c);
  return out;
}

}  // namespace

json tokenize_response(const Engine& e, const std::string& body, ReasoningMode default_mode, long long max_model_len) {
  const json j = parse_request_body(body);
  std::vector<int> ids;
  try {
    if (j.contains("messages")) {
      const ChatRequest c = parse_chat_request(body, default_mode, /*test_hooks=*/false);
      ids = chat_prompt_tokens(e, c.messages, c.tools, c.mode);
    } else {
      const bool llama = j.contains("content");
      if (!llama && !j.contains("prompt")) bad_request("content", "give 'content' or 'prompt' (text) or 'messages' (a chat)");
      ids = e.tokenizer().encode(text_field(j, llama ? "content" : "prompt"));
      const bool bos = llama ? flag(j, "add_special", false) : flag(j, "add_special_tokens", true);
      if (bos && e.bos_id() >= 0) ids.insert(ids.begin(), e.bos_id());
    }
  } catch (const Error& err) {
    bad_request(j.contains("messages") ? "messages" : "content", err.what());
  }
  json tokens = json::array();
  const bool with_pieces = flag(j, "with_pieces", false);
  for (int id : ids) tokens.push_back(with_pieces ? json{{"id", id}, {"piece", piece(e.tokenizer(), id)}} : json(id));
  return {{"tokens", tokens}, {"count", ids.size()}, {"max_model_len", max_model_len}};
}

json detokenize_response(const Engine& e, const std::string& body) {
  const json j = parse_request_body(body);
  if (!j.contains("tokens") || !j["tokens"].is_array()) bad_request("tokens", "'tokens' must be an array of token ids");
  const json& t = j["tokens"];
  std::vector<int> ids;
  ids.reserve(t.size());
  const int vocab = e.tokenizer().vocab_size();
  for (size_t i = 0; i < t.size(); ++i) {
    if (!t[i].is_number_integer() || t[i].get<long long>() < 0 || t[i].get<long long>() >= vocab)
      bad_request("tokens", "tokens[" + std::to_string(i) + "] = " + t[i].dump() + " is not a token id (the vocabulary has " +
                        std::to_string(vocab) + ")");
    ids.push_back(t[i].get<int>());
  }
  const std::string text = utf8_sanitize(e.tokenizer().decode(ids));
  return {{"content", text}, {"prompt", text}};
}

}  // namespace dsv4
