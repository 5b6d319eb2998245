// JSON of logprobs (logprobs_json.h).
#include "server/logprobs_json.h"

#include <string>

#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

std::string name(const Tokenizer& t, int id, bool token_ids) {
  return token_ids ? "token_id:" + std::to_string(id) : utf8_sanitize(t.token_bytes(id));
}

json bytes(const Tokenizer& t, int id) {
  json out = json::array();
  for (unsigned char c : t.token_bytes(id)) out.push_back(c);
  return out;
}

}  // namespace

json chat_logprobs(const Tokenizer& t, std::span<const TokenLogprob> lps, bool token_ids) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    json top = json::array();
    for (const auto& [id, l] : lp.top) top.push_back({{"token", name(t, id, token_ids)}, {"logprob", l}, {"bytes", bytes(t, id)}});
    content.push_back({{"token", name(t, lp.token, token_ids)}, {"logprob", lp.logprob}, {"bytes", bytes(t, lp.token)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs(const Tokenizer& t, std::span<const TokenLogprob> lps, bool token_ids, size_t offset) {
  json tokens = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : lps) {
    tokens.push_back(name(t, lp.token, token_ids));
    values.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, l] : lp.top) top[name(t, id, token_ids)] = l;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += t.token_bytes(lp.token).size();
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

}  // namespace dsv4
