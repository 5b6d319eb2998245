// Field-by-field validation of OpenAI chat and completion requests.
#include "server/api_request.h"

#include <algorithm>
#include <random>

#include "core/check.h"
#include "core/json_input.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

}  // namespace

void bad_request(const std::string& param, const std::string& message, const std::string& code) {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

std::string dump(const nlohmann::ordered_json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

nlohmann::ordered_json parse_request_body(const std::string& body) {
  json j;
  try {
    j = parse_json<json>(body);
  } catch (const JsonTooDeep& e) {
    bad_request("", std::string("the request body is ") + e.what() + " (the limit)", "json_too_deep");
  } catch (const json::exception& e) {  // malformed, or a number beyond double's range
    bad_request("", std::string("the request body is not valid JSON: ") + e.what(), "invalid_json");
  }
  if (!j.is_object()) bad_request("", "the request body must be a JSON object", "invalid_json");
  return j;
}

namespace {

// The field if present and not null, after a type check.
const json* field(const json& j, const char* key, json::value_t type, const char* type_name) {
  if (!j.contains(key) || j[key].is_null()) return nullptr;
  const json& v = j[key];
  const bool ok = type == json::value_t::number_float ? v.is_number()
                  : type == json::value_t::number_integer ? v.is_number_integer()
                                                          : v.type() == type;
  if (!ok) bad_request(key, std::string("'") + key + "' must be " + type_name + ", got " + v.dump());
  return &v;
}

double number(const json& j, const char* key, double def, double lo, double hi) {
  const json* v = field(j, key, json::value_t::number_float, "a number");
  if (!v) return def;
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    bad_request(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v->dump());
  return x;
}

std::optional<long long> integer(const json& j, const char* key, long long lo, long long hi) {
  const json* v = field(j, key, json::value_t::number_integer, "an integer");
  if (!v) return std::nullopt;
  const long long x = v->is_number_unsigned() ? static_cast<long long>(std::min<uint64_t>(v->get<uint64_t>(), INT64_MAX)) : v->get<long long>();
  if (x < lo || x > hi)
    bad_request(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v->dump());
  return x;
}

// OpenAI's content-part array -> the text the template renders: the text parts joined by a
// blank line, as the official encoder joins a tool result's parts. A part of another type is
// refused by name: this model reads text.
std::string joined_text_parts(const json& parts, size_t message) {
  const std::string where = "messages[" + std::to_string(message) + "].content";
  std::string text;
  for (size_t k = 0; k < parts.size(); ++k) {
    const json& p = parts[k];
    const std::string at = where + "[" + std::to_string(k) + "]";
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      bad_request("messages", at + " must be an object with a string 'type'");
    const std::string type = p["type"].get<std::string>();
    if (type != "text")
      bad_request("messages", at + ": content parts of type '" + type + "' are not supported (this model reads text only)",
          "unsupported_content_type");
    if (!p.contains("text") || !p["text"].is_string()) bad_request("messages", at + " must have a string 'text'");
    if (k > 0) text += "\n\n";
    text += p["text"].get<std::string>();
  }
  return text;
}

void parse_common(const json& j, CommonRequest& r, bool test_hooks) {
  if (const json* v = field(j, "model", json::value_t::string, "a string")) r.model = v->get<std::string>();
  if (const json* v = field(j, "stream", json::value_t::boolean, "a boolean")) r.stream = v->get<bool>();
  if (const json* so = field(j, "stream_options", json::value_t::object, "an object"))
    if (const json* v = field(*so, "include_usage", json::value_t::boolean, "a boolean")) r.include_usage = v->get<bool>();
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (auto v = integer(j, key, 1, 1 << 30)) r.max_tokens = static_cast<int>(*v);
  r.sampling.temperature = static_cast<float>(number(j, "temperature", 1.0, 0.0, 2.0));
  r.sampling.top_p = static_cast<float>(number(j, "top_p", 1.0, 0.0, 1.0));
  if (j.contains("top_p") && r.sampling.top_p <= 0) bad_request("top_p", "'top_p' must be greater than 0");
  r.sampling.min_p = static_cast<float>(number(j, "min_p", 0.0, 0.0, 0.999999));
  r.sampling.top_k = static_cast<int>(integer(j, "top_k", 0, 1 << 30).value_or(0));
  if (auto s = integer(j, "seed", INT64_MIN, INT64_MAX)) r.sampling.seed = static_cast<uint64_t>(*s);
  else r.sampling.seed = std::random_device{}();
  r.n = static_cast<int>(integer(j, "n", 1, kMaxSamples).value_or(1));
  r.adjust.presence = static_cast<float>(number(j, "presence_penalty", 0.0, -2.0, 2.0));
  r.adjust.frequency = static_cast<float>(number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  r.adjust.repetition = static_cast<float>(number(j, "repetition_penalty", 1.0, 0.0, 100.0));
  if (r.adjust.repetition <= 0) bad_request("repetition_penalty", "'repetition_penalty' must be greater than 0");
  if (const json* v = field(j, "logit_bias", json::value_t::object, "an object")) {
    if (v->size() > 1024) bad_request("logit_bias", "'logit_bias' may name at most 1024 tokens");
    for (const auto& [key, value] : v->items()) {
      // Keys are token ids in decimal, as OpenAI's; the server checks them against the vocabulary.
      const bool digits = !key.empty() && key.size() <= 9 &&
                          std::all_of(key.begin(), key.end(), [](unsigned char c) { return c >= '0' && c <= '9'; });
      if (!digits) bad_request("logit_bias", "logit_bias: '" + key + "' is not a token id");
      if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100))
        bad_request("logit_bias", "logit_bias: the bias of token " + key + " must be a number in [-100, 100], got " + value.dump());
      r.adjust.bias.emplace_back(std::stoi(key), static_cast<float>(value.get<double>()));
    }
  }
  if (const json* v = field(j, "return_tokens_as_token_ids", json::value_t::boolean, "a boolean"))
    r.token_ids = v->get<bool>();
  if (integer(j, "best_of", 1, 1 << 20).value_or(1) != 1) bad_request("best_of", "only best_of = 1 is supported (n gives samples)");
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) bad_request("stop", "'stop' must be a string or an array of strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad_request("stop", "'stop' must be a string or an array of strings");
    }
    if (r.stop.size() > 16) bad_request("stop", "at most 16 stop strings");
    for (const auto& x : r.stop)
      if (x.empty()) bad_request("stop", "stop strings must not be empty");
  }
  if (const json* v = field(j, "dsv4_forced_text", json::value_t::string, "a string")) {
    if (!test_hooks) bad_request("dsv4_forced_text", "dsv4_forced_text is a test hook; start the server with --test-hooks");
    r.forced_text = v->get<std::string>();
  }
}

}  // namespace

nlohmann::ordered_json ApiError::body() const {
  json e = {{"message", message}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return {{"error", e}};
}

namespace {

// response_format json_object / json_schema: the answer is constrained to the schema
// (runtime/output_constraint.h), and the encoder's system prompt states it as the official
// encoder does, from the response_format the client sent.
void response_format(const json& rf, ChatRequest& r) {
  const json* type = field(rf, "type", json::value_t::string, "a string");
  if (!type) bad_request("response_format", "response_format needs a 'type' (text, json_object or json_schema)", "missing_required_parameter");
  if (*type == "text") return;
  if (*type == "json_object") {
    r.format = JsonSchema::any_object();
  } else if (*type == "json_schema") {
    const json* js = field(rf, "json_schema", json::value_t::object, "an object");
    if (!js) bad_request("response_format", "response_format json_schema needs a 'json_schema' object", "missing_required_parameter");
    const json* schema = field(*js, "schema", json::value_t::object, "an object");
    try {
      // OpenAI's json_schema without a schema: any JSON object.
      r.format = schema ? JsonSchema::compile(nlohmann::json::parse(schema->dump())) : JsonSchema::any_object();
    } catch (const Error& e) {
      bad_request("response_format", std::string("response_format.json_schema: ") + e.what());
    }
  } else {
    bad_request("response_format", "response_format type must be text, json_object or json_schema, got " + type->dump());
  }
  if (!r.tools.is_null() && !r.tools.empty())
    bad_request("response_format", "a JSON response_format with tools: a constrained answer cannot call a tool (send tool_choice \"none\" or no tools)");
  r.answer_after_think = r.mode != ReasoningMode::non_think;
  if (!r.messages.empty() && r.messages[0].value("role", "") == "system") {
    r.messages[0]["response_format"] = rf;
  } else {
    json system = json::object();
    system["role"] = "system";
    system["content"] = "";
    system["response_format"] = rf;
    r.messages.insert(r.messages.begin(), std::move(system));
  }
}

}  // namespace

ChatRequest parse_chat_request(const std::string& body, ReasoningMode default_mode, bool test_hooks) {
  const json j = parse_request_body(body);
  ChatRequest r;
  parse_common(j, r, test_hooks);
  const json* lp = field(j, "logprobs", json::value_t::boolean, "a boolean");
  const std::optional<long long> top = integer(j, "top_logprobs", 0, kMaxTopLogprobs);
  if (top.value_or(0) > 0 && !(lp && lp->get<bool>())) bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (lp && lp->get<bool>()) r.logprobs = static_cast<int>(top.value_or(0));
  const json* m = field(j, "messages", json::value_t::array, "an array");
  if (!m || m->empty()) bad_request("messages", "'messages' must be a non-empty array", "missing_required_parameter");
  r.messages = *m;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    json& x = r.messages[i];
    if (!x.is_object() || !x.contains("role") || !x["role"].is_string())
      bad_request("messages", "messages[" + std::to_string(i) + "] must be an object with a string 'role'");
    // A tool result's parts are the encoder's own to render (non-text ones as "[Unsupported
    // TYPE]", as the official encoder does).
    if (x.contains("content") && x["content"].is_array() && x["role"] != "tool")
      x["content"] = joined_text_parts(x["content"], i);
  }
  if (const json* t = field(j, "tools", json::value_t::array, "an array")) r.tools = *t;
  if (j.contains("tool_choice") && !j["tool_choice"].is_null()) {
    const json& tc = j["tool_choice"];
    if (tc == "none") r.tools = nullptr;
    else if (tc != "auto") bad_request("tool_choice", "only tool_choice \"auto\" and \"none\" are supported");
  }
  r.mode = default_mode;
  // vLLM's way of choosing the template's reasoning: chat_template_kwargs {"thinking": true}.
  // The fields of the request itself win over it.
  json settings = json::object();
  for (const char* key : {"thinking", "reasoning_effort"})
    if (j.contains(key) && !j[key].is_null()) settings[key] = j[key];
  if (const json* kw = field(j, "chat_template_kwargs", json::value_t::object, "an object")) {
    for (const auto& [key, value] : kw->items()) {
      const std::string name = key == "enable_thinking" ? "thinking" : key;
      if (name != "thinking" && name != "reasoning_effort")
        bad_request("chat_template_kwargs", "chat_template_kwargs: '" + key +
                                        "' is not a setting of the DeepSeek-V4 template (known: thinking, "
                                        "reasoning_effort)");
      if (!settings.contains(name) || settings[name].is_null()) settings[name] = value;
    }
  }
  if (settings.contains("thinking") && !settings["thinking"].is_null()) {
    const json& t = settings["thinking"];
    bool on;
    if (t.is_boolean()) on = t.get<bool>();
    else if (t.is_object() && t.contains("type") && (t["type"] == "enabled" || t["type"] == "disabled")) on = t["type"] == "enabled";
    else bad_request("thinking", "'thinking' must be a boolean or {\"type\": \"enabled\" | \"disabled\"}");
    r.mode = on ? ReasoningMode::think_high : ReasoningMode::non_think;
  }
  if (const json* e = field(settings, "reasoning_effort", json::value_t::string, "a string")) {
    try {
      const ReasoningMode m2 = parse_reasoning_mode(e->get<std::string>());
      // A reasoning effort selects thinking unless "thinking" turned it off explicitly.
      if (!(settings.contains("thinking") && r.mode == ReasoningMode::non_think)) r.mode = m2;
    } catch (const Error& err) {
      bad_request("reasoning_effort", err.what());
    }
  }
  if (const json* rf = field(j, "response_format", json::value_t::object, "an object")) response_format(*rf, r);
  return r;
}

CompletionRequest parse_completion_request(const std::string& body, bool test_hooks) {
  const json j = parse_request_body(body);
  CompletionRequest r;
  parse_common(j, r, test_hooks);
  if (const std::optional<long long> lp = integer(j, "logprobs", 0, kMaxTopLogprobs)) r.logprobs = static_cast<int>(*lp);
  if (r.n > 1 && r.stream) bad_request("n", "n > 1 with stream is supported on /v1/chat/completions only");
  if (!j.contains("prompt")) bad_request("prompt", "'prompt' is required", "missing_required_parameter");
  const json& p = j["prompt"];
  if (p.is_string()) r.prompt = p.get<std::string>();
  else if (p.is_array() && p.size() == 1 && p[0].is_string()) r.prompt = p[0].get<std::string>();
  else bad_request("prompt", "'prompt' must be a string (or an array of one string)");
  if (r.prompt.empty()) bad_request("prompt", "'prompt' must not be empty");
  if (const json* e = field(j, "echo", json::value_t::boolean, "a boolean"); e && e->get<bool>()) bad_request("echo", "echo is not supported");
  if (const json* s = field(j, "suffix", json::value_t::string, "a string"); s && !s->get<std::string>().empty())
    bad_request("suffix", "suffix is not supported");
  return r;
}

}  // namespace dsv4
