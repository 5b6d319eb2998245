// Anthropic Messages <-> the chat pipeline (anthropic_api.h).
#include "server/anthropic_api.h"

#include "server/ids.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

// An object's string field, or def when it is absent or not a string (never throws).
std::string string_or(const json& j, const char* key, const std::string& def) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : def;
}

const json& blocks_of(const json& content, const std::string& where) {
  if (!content.is_array()) bad_request("messages", where + " must be a string or an array of content blocks");
  return content;
}

std::string block_type(const json& b, const std::string& where) {
  if (!b.is_object() || !b.contains("type") || !b["type"].is_string())
    bad_request("messages", where + " must be an object with a string 'type'");
  return b["type"].get<std::string>();
}

std::string string_field(const json& b, const char* key, const std::string& where) {
  if (!b.contains(key) || !b[key].is_string()) bad_request("messages", where + " needs a string '" + key + "'");
  return b[key].get<std::string>();
}

[[noreturn]] void unsupported(const std::string& type, const std::string& where) {
  bad_request("messages", where + ": content blocks of type '" + type + "' are not supported (this model reads text only)");
}

// A tool result's content: a string, or text blocks (joined by a blank line, as the encoder joins
// a tool message's parts).
json tool_result_content(const json& b, const std::string& where) {
  if (!b.contains("content") || b["content"].is_null()) return "";
  const json& c = b["content"];
  if (c.is_string()) return c;
  json parts = json::array();
  for (size_t i = 0; i < blocks_of(c, where).size(); ++i) {
    const std::string at = where + ".content[" + std::to_string(i) + "]";
    const std::string type = block_type(c[i], at);
    if (type != "text") unsupported(type, at);
    parts.push_back({{"type", "text"}, {"text", string_field(c[i], "text", at)}});
  }
  return parts;
}

// One Anthropic message -> the chat messages it stands for (a user turn may carry tool
// results, which the encoder takes as tool messages, before its text).
void convert_message(const json& m, size_t index, json& out) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
    bad_request("messages", where + " must be an object with a string 'role'");
  const std::string role = m["role"].get<std::string>();
  if (role != "user" && role != "assistant") bad_request("messages", where + ".role must be 'user' or 'assistant', got '" + role + "'");
  if (!m.contains("content")) bad_request("messages", where + " has no 'content'");
  const json& content = m["content"];
  if (content.is_string()) {
    out.push_back({{"role", role}, {"content", content}});
    return;
  }
  const json& blocks = blocks_of(content, where + ".content");
  std::string text, thinking;
  json calls = json::array();
  bool has_text = false;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string at = where + ".content[" + std::to_string(i) + "]";
    const json& b = blocks[i];
    const std::string type = block_type(b, at);
    if (type == "text") {
      text += string_field(b, "text", at);
      has_text = true;
    } else if (role == "user" && type == "tool_result") {
      out.push_back({{"role", "tool"}, {"tool_call_id", string_field(b, "tool_use_id", at)},
                     {"content", tool_result_content(b, at)}});
    } else if (role == "assistant" && type == "thinking") {
      thinking += string_field(b, "thinking", at);
    } else if (role == "assistant" && type == "redacted_thinking") {
      // Encrypted by another model: nothing this one can read.
    } else if (role == "assistant" && type == "tool_use") {
      if (!b.contains("input") || !b["input"].is_object()) bad_request("messages", at + " needs an object 'input'");
      calls.push_back({{"id", string_field(b, "id", at)}, {"type", "function"},
                       {"function", {{"name", string_field(b, "name", at)}, {"arguments", dump(b["input"])}}}});
    } else {
      unsupported(type, at);
    }
  }
  if (role == "user") {
    if (has_text) out.push_back({{"role", "user"}, {"content", text}});
    return;
  }
  json a = {{"role", "assistant"}, {"content", text}};
  if (!thinking.empty()) a["reasoning_content"] = thinking;
  if (!calls.empty()) a["tool_calls"] = calls;
  out.push_back(a);
}

// The Anthropic body -> the OpenAI chat body parse_chat_request checks.
std::string as_chat_body(const json& j, bool need_max_tokens) {
  json c = json::object();
  json messages = json::array();
  if (j.contains("system") && !j["system"].is_null()) {
    const json& s = j["system"];
    std::string text;
    if (s.is_string()) {
      text = s.get<std::string>();
    } else if (s.is_array()) {
      for (size_t i = 0; i < s.size(); ++i) {
        const std::string at = "system[" + std::to_string(i) + "]";
        const std::string type = block_type(s[i], at);
        if (type != "text") bad_request("system", at + ": system blocks must be text, got '" + type + "'");
        text += (i ? "\n\n" : "") + string_field(s[i], "text", at);
      }
    } else {
      bad_request("system", "'system' must be a string or an array of text blocks");
    }
    messages.push_back({{"role", "system"}, {"content", text}});
  }
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    bad_request("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < j["messages"].size(); ++i) convert_message(j["messages"][i], i, messages);
  c["messages"] = messages;
  if (j.contains("tools") && !j["tools"].is_null()) {
    if (!j["tools"].is_array()) bad_request("tools", "'tools' must be an array");
    json tools = json::array();
    for (size_t i = 0; i < j["tools"].size(); ++i) {
      const json& t = j["tools"][i];
      const std::string at = "tools[" + std::to_string(i) + "]";
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) bad_request("tools", at + " needs a string 'name'");
      if (t.contains("type") && t["type"].is_string() && t["type"] != "custom")
        bad_request("tools", at + ": tools of type '" + t["type"].get<std::string>() + "' (Anthropic's own) are not available here");
      json fn = {{"name", t["name"]}};
      if (t.contains("description")) fn["description"] = t["description"];
      fn["parameters"] = t.value("input_schema", json::object());
      tools.push_back({{"type", "function"}, {"function", fn}});
    }
    c["tools"] = tools;
  }
  if (j.contains("tool_choice") && !j["tool_choice"].is_null()) {
    const std::string type = string_or(j["tool_choice"], "type", "");
    if (type != "auto" && type != "none")
      bad_request("tool_choice", "only tool_choice {\"type\": \"auto\"} and {\"type\": \"none\"} are supported");
    c["tool_choice"] = type;
  }
  if (need_max_tokens && (!j.contains("max_tokens") || j["max_tokens"].is_null()))
    bad_request("max_tokens", "'max_tokens' is required");
  for (const char* key : {"max_tokens", "temperature", "top_p", "top_k", "stream", "dsv4_forced_text"})
    if (j.contains(key)) c[key] = j[key];
  if (j.contains("stop_sequences")) c["stop"] = j["stop_sequences"];
  if (j.contains("thinking") && !j["thinking"].is_null()) {
    const json& t = j["thinking"];
    const std::string type = string_or(t, "type", "");
    if (type == "enabled") {
      const long long budget = t.contains("budget_tokens") && t["budget_tokens"].is_number_integer()
                                   ? t["budget_tokens"].get<long long>() : 0;
      if (budget < 1) bad_request("thinking", "thinking.budget_tokens must be a positive integer");
      c["reasoning_effort"] = budget >= kThinkMaxBudget ? "max" : "high";
    } else if (type == "disabled") {
      c["thinking"] = false;
    } else {
      bad_request("thinking", "'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}");
    }
  }
  return dump(c);
}

json usage(const GenerateResult& r) {
  const int output = static_cast<int>(r.tokens.size()) + (r.hit_eos ? 1 : 0);
  return {{"input_tokens", r.prompt_tokens - r.reused_tokens}, {"output_tokens", output},
          {"cache_read_input_tokens", r.reused_tokens}, {"cache_creation_input_tokens", 0}};
}

std::string event(const char* name, const json& data) {
  return std::string("event: ") + name + "\ndata: " + dump(data) + "\n\n";
}

}  // namespace

MessagesRequest parse_messages_request(const std::string& body, ReasoningMode default_mode, bool test_hooks) {
  const json j = parse_request_body(body);
  MessagesRequest r;
  static_cast<ChatRequest&>(r) = parse_chat_request(as_chat_body(j, true), default_mode, test_hooks);
  if (j.contains("model") && j["model"].is_string()) r.model = j["model"].get<std::string>();
  return r;
}

MessagesRequest parse_count_tokens_request(const std::string& body, ReasoningMode default_mode) {
  const json j = parse_request_body(body);
  MessagesRequest r;
  static_cast<ChatRequest&>(r) = parse_chat_request(as_chat_body(j, false), default_mode, false);
  return r;
}

json anthropic_error_body(const ApiError& e) {
  const char* type = e.status == 401   ? "authentication_error"
                     : e.status == 403 ? "permission_error"
                     : e.status == 404 ? "not_found_error"
                     : e.status == 413 ? "request_too_large"
                     : e.status == 429 ? "rate_limit_error"
                     : e.status == 503 ? "overloaded_error"
                     : e.status >= 500 ? "api_error"
                                       : "invalid_request_error";
  return {{"type", "error"}, {"error", {{"type", type}, {"message", e.message}}}};
}

const char* stop_reason(const GenerateResult& r, bool tool_use) {
  if (r.finish == FinishReason::length) return "max_tokens";
  if (tool_use) return "tool_use";
  return r.stop_string.empty() ? "end_turn" : "stop_sequence";
}

json message_response(const std::string& id, const std::string& model, const chat::ParsedMessage& m,
                      const GenerateResult& r) {
  json content = json::array();
  if (!m.reasoning_content.empty())
    content.push_back({{"type", "thinking"}, {"thinking", m.reasoning_content}, {"signature", ""}});
  if (!m.content.empty()) content.push_back({{"type", "text"}, {"text", m.content}});
  for (const chat::ToolCall& t : m.tool_calls)
    content.push_back({{"type", "tool_use"}, {"id", random_id("toolu_")}, {"name", t.name},
                       {"input", json::parse(t.arguments, nullptr, false)}});
  const bool tool_use = !m.tool_calls.empty();
  return {{"id", id}, {"type", "message"}, {"role", "assistant"}, {"model", model}, {"content", content},
          {"stop_reason", stop_reason(r, tool_use)},
          {"stop_sequence", r.stop_string.empty() ? json(nullptr) : json(r.stop_string)}, {"usage", usage(r)}};
}

MessageStream::MessageStream(std::string id, std::string model, int input_tokens, int cached_tokens)
    : id_(std::move(id)), model_(std::move(model)), input_tokens_(input_tokens), cached_tokens_(cached_tokens) {}

std::string MessageStream::start() const {
  const json message = {{"id", id_}, {"type", "message"}, {"role", "assistant"}, {"model", model_},
                        {"content", json::array()}, {"stop_reason", nullptr}, {"stop_sequence", nullptr},
                        {"usage", {{"input_tokens", input_tokens_ - cached_tokens_}, {"output_tokens", 0},
                                   {"cache_read_input_tokens", cached_tokens_}, {"cache_creation_input_tokens", 0}}}};
  return event("message_start", {{"type", "message_start"}, {"message", message}});
}

std::string MessageStream::open(Block b, const json& content_block) {
  std::string out = close();
  block_ = b;
  ++index_;
  return out + event("content_block_start", {{"type", "content_block_start"}, {"index", index_}, {"content_block", content_block}});
}

std::string MessageStream::close() {
  if (block_ == Block::none) return "";
  block_ = Block::none;
  return event("content_block_stop", {{"type", "content_block_stop"}, {"index", index_}});
}

std::string MessageStream::delta(const chat::StreamDelta& d) {
  std::string out;
  const auto block_delta = [&](const json& delta) {
    out += event("content_block_delta", {{"type", "content_block_delta"}, {"index", index_}, {"delta", delta}});
  };
  if (!d.reasoning_content.empty()) {
    if (block_ != Block::thinking) out += open(Block::thinking, {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
    block_delta({{"type", "thinking_delta"}, {"thinking", d.reasoning_content}});
  }
  if (!d.content.empty()) {
    if (block_ != Block::text) out += open(Block::text, {{"type", "text"}, {"text", ""}});
    block_delta({{"type", "text_delta"}, {"text", d.content}});
  }
  for (const chat::ToolCallDelta& t : d.tool_calls) {
    if (t.begin)
      out += open(Block::tool_use, {{"type", "tool_use"}, {"id", random_id("toolu_")}, {"name", t.name}, {"input", json::object()}});
    if (!t.arguments.empty()) block_delta({{"type", "input_json_delta"}, {"partial_json", t.arguments}});
  }
  return out;
}

std::string MessageStream::finish(const GenerateResult& r, bool tool_use) {
  std::string out = close();
  const int output = static_cast<int>(r.tokens.size()) + (r.hit_eos ? 1 : 0);
  out += event("message_delta", {{"type", "message_delta"},
                                 {"delta", {{"stop_reason", stop_reason(r, tool_use)},
                                            {"stop_sequence", r.stop_string.empty() ? json(nullptr) : json(r.stop_string)}}},
                                 {"usage", {{"input_tokens", r.prompt_tokens - r.reused_tokens}, {"output_tokens", output},
                                            {"cache_read_input_tokens", r.reused_tokens}}}});
  return out + event("message_stop", {{"type", "message_stop"}});
}

}  // namespace dsv4
