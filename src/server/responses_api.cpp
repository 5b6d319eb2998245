// OpenAI Responses <-> the chat pipeline (responses_api.h).
#include "server/responses_api.h"

#include "server/ids.h"

namespace dsv4 {

namespace {

using json = nlohmann::ordered_json;

bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

std::string string_field(const json& item, const char* key, const std::string& param, const std::string& at) {
  if (!item.contains(key) || !item[key].is_string()) bad_request(param, at + " needs a string '" + key + "'");
  return item[key].get<std::string>();
}

std::string type_of(const json& x, const std::string& param, const std::string& at) {
  if (!x.is_object() || !x.contains("type") || !x["type"].is_string())
    bad_request(param, at + " must be an object with a string 'type'");
  return x["type"].get<std::string>();
}

// A content list's text: the parts of the given types, joined by sep. Other part types
// (input_image, input_file, ...) are refused by name: this model reads text.
std::string parts_text(const json& content, std::initializer_list<const char*> types, const char* sep,
                       const std::string& param, const std::string& at) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(param, at + " must be a string or an array of content parts");
  std::string text;
  for (size_t k = 0; k < content.size(); ++k) {
    const std::string part_at = at + "[" + std::to_string(k) + "]";
    const std::string type = type_of(content[k], param, part_at);
    bool known = false;
    for (const char* t : types) known = known || type == t;
    if (!known)
      bad_request(param, part_at + ": content parts of type '" + type + "' are not supported (this model reads text only)",
          "unsupported_content_type");
    if (k > 0) text += sep;
    text += string_field(content[k], "text", param, part_at);
  }
  return text;
}

// A reasoning item's text: its reasoning_text content, else its summary (another model's
// encrypted_content is nothing this one can read).
std::string reasoning_text(const json& item, const std::string& param, const std::string& at) {
  for (const char* key : {"content", "summary"})
    if (item.contains(key) && item[key].is_array() && !item[key].empty())
      return parts_text(item[key], {"reasoning_text", "summary_text"}, "\n\n", param, at + "." + key);
  return "";
}

// Items -> chat messages. The encoder has one assistant message per turn: a run of reasoning,
// assistant message and function_call items (in the order a response lists them) becomes one,
// and a reasoning or message item after content or calls starts the next.
class ItemsToMessages {
 public:
  explicit ItemsToMessages(json& messages) : messages_(messages) {}

  void add(const json& items, const std::string& param) {
    for (size_t i = 0; i < items.size(); ++i) add_item(items[i], param, param + "[" + std::to_string(i) + "]");
  }

 private:
  json& assistant(bool fresh) {
    if (open_ >= 0) {
      const json& a = messages_[open_];
      const bool started = !a["content"].get<std::string>().empty() || a.contains("tool_calls");
      if (!(fresh && (started || a.contains("reasoning_content")))) return messages_[open_];
    }
    messages_.push_back({{"role", "assistant"}, {"content", ""}});
    open_ = static_cast<std::ptrdiff_t>(messages_.size()) - 1;
    return messages_.back();
  }

  void add_item(const json& item, const std::string& param, const std::string& at) {
    if (!item.is_object()) bad_request(param, at + " must be an object");
    // An item without a type is a message (the SDK's EasyInputMessage).
    const std::string type = item.contains("type") ? type_of(item, param, at) : "message";
    if (type == "message") {
      const std::string role = string_field(item, "role", param, at);
      if (!item.contains("content")) bad_request(param, at + " has no 'content'");
      if (role == "assistant") {
        const std::string text = parts_text(item["content"], {"output_text", "input_text"}, "", param, at + ".content");
        json& a = assistant(false);
        if (!a["content"].get<std::string>().empty() || a.contains("tool_calls")) assistant(true)["content"] = text;
        else a["content"] = text;
        return;
      }
      if (role != "user" && role != "system" && role != "developer")
        bad_request(param, at + ".role must be 'user', 'system', 'developer' or 'assistant', got '" + role + "'");
      open_ = -1;
      messages_.push_back({{"role", role},
                           {"content", parts_text(item["content"], {"input_text", "output_text"}, "\n\n", param, at + ".content")}});
    } else if (type == "reasoning") {
      const std::string text = reasoning_text(item, param, at);
      assistant(true)["reasoning_content"] = text;
    } else if (type == "function_call") {
      json call = {{"id", string_field(item, "call_id", param, at)}, {"type", "function"},
                   {"function", {{"name", string_field(item, "name", param, at)},
                                 {"arguments", string_field(item, "arguments", param, at)}}}};
      json& a = assistant(false);
      if (!a.contains("tool_calls")) a["tool_calls"] = json::array();
      a["tool_calls"].push_back(std::move(call));
    } else if (type == "function_call_output") {
      if (!item.contains("output")) bad_request(param, at + " has no 'output'");
      open_ = -1;
      messages_.push_back({{"role", "tool"}, {"tool_call_id", string_field(item, "call_id", param, at)},
                           {"content", parts_text(item["output"], {"input_text"}, "\n\n", param, at + ".output")}});
    } else if (type == "item_reference") {
      bad_request(param, at + ": items by reference are not supported (send the item, or previous_response_id)");
    } else {
      bad_request(param, at + ": items of type '" + type + "' are not supported");
    }
  }

  json& messages_;
  std::ptrdiff_t open_ = -1;  // the assistant turn being built, if any
};

// Responses' efforts -> the reasoning modes (parse_reasoning_mode's names).
std::string effort_name(const json& reasoning) {
  if (!reasoning.is_object()) bad_request("reasoning", "'reasoning' must be an object");
  if (!present(reasoning, "effort")) return "";
  const json& e = reasoning["effort"];
  const std::string s = e.is_string() ? e.get<std::string>() : "";
  if (s == "minimal") return "low";
  if (s == "xhigh") return "max";
  if (s == "none" || s == "low" || s == "medium" || s == "high" || s == "max") return s;
  bad_request("reasoning", "reasoning.effort must be one of none, minimal, low, medium, high, xhigh, max; got " + dump(e));
}

json function_tools(const json& tools) {
  if (!tools.is_array()) bad_request("tools", "'tools' must be an array");
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = "tools[" + std::to_string(i) + "]";
    const std::string type = type_of(tools[i], "tools", at);
    if (type != "function") bad_request("tools", at + ": tools of type '" + type + "' are not available here (function tools only)");
    json fn = {{"name", string_field(tools[i], "name", "tools", at)}};
    if (present(tools[i], "description")) fn["description"] = tools[i]["description"];
    fn["parameters"] = present(tools[i], "parameters") ? tools[i]["parameters"] : json::object();
    out.push_back({{"type", "function"}, {"function", fn}});
  }
  return out;
}

// Fields that would change the answer and are not implemented: refused, never ignored.
void refuse_unsupported(const json& j) {
  if (present(j, "background") && j["background"] != false) bad_request("background", "background responses are not supported");
  if (present(j, "conversation")) bad_request("conversation", "conversations are not supported (use previous_response_id)");
  if (present(j, "prompt")) bad_request("prompt", "prompt templates are not supported");
  if (present(j, "top_logprobs") && j["top_logprobs"] != 0) bad_request("top_logprobs", "logprobs are not supported here yet");
  if (present(j, "include")) {
    if (!j["include"].is_array()) bad_request("include", "'include' must be an array");
    for (const json& x : j["include"])
      if (x == "message.output_text.logprobs") bad_request("include", "logprobs are not supported here yet");
  }
  if (present(j, "text")) {
    const json& t = j["text"];
    if (!t.is_object()) bad_request("text", "'text' must be an object");
    if (present(t, "format") && (!t["format"].is_object() || !t["format"].contains("type") ||
                                 !t["format"]["type"].is_string()))
      bad_request("text", "text.format must be an object with a string 'type' (text, json_object or json_schema)");
  }
  if (present(j, "truncation") && j["truncation"] != "auto" && j["truncation"] != "disabled")
    bad_request("truncation", "'truncation' must be 'auto' or 'disabled'");
}

json usage(const GenerateResult& r, int reasoning_tokens) {
  const int output = static_cast<int>(r.tokens.size()) + (r.hit_eos ? 1 : 0);
  return {{"input_tokens", r.prompt_tokens}, {"input_tokens_details", {{"cached_tokens", r.reused_tokens}}},
          {"output_tokens", output}, {"output_tokens_details", {{"reasoning_tokens", reasoning_tokens}}},
          {"total_tokens", r.prompt_tokens + output}};
}

json reasoning_item(const std::string& id, const std::string& text) {
  return {{"id", id}, {"type", "reasoning"}, {"summary", json::array()},
          {"content", json::array({{{"type", "reasoning_text"}, {"text", text}}})}};
}

json text_part(const std::string& text) {
  return {{"type", "output_text"}, {"annotations", json::array()}, {"logprobs", json::array()}, {"text", text}};
}

json message_item(const std::string& id, const char* status, json content) {
  return {{"id", id}, {"type", "message"}, {"status", status}, {"role", "assistant"}, {"content", std::move(content)}};
}

json call_item(const std::string& id, const char* status, const std::string& call_id, const std::string& name,
               const std::string& arguments) {
  return {{"id", id}, {"type", "function_call"}, {"status", status}, {"arguments", arguments},
          {"call_id", call_id}, {"name", name}};
}

}  // namespace

ResponsesRequest parse_responses_request(const std::string& body, ReasoningMode default_mode, bool test_hooks,
                                         const ResponseHistory& history) {
  const json j = parse_request_body(body);
  refuse_unsupported(j);
  ResponsesRequest r;
  json messages = json::array();
  ItemsToMessages items(messages);
  if (present(j, "instructions")) {
    if (!j["instructions"].is_string()) bad_request("instructions", "'instructions' must be a string");
    messages.push_back({{"role", "system"}, {"content", j["instructions"]}});
  }
  if (present(j, "previous_response_id")) {
    if (!j["previous_response_id"].is_string()) bad_request("previous_response_id", "'previous_response_id' must be a string");
    const std::string id = j["previous_response_id"].get<std::string>();
    std::optional<json> h = history(id);
    if (!h) throw ApiError(404, "Previous response with id '" + id + "' not found.", "invalid_request_error",
                           "previous_response_id", "previous_response_not_found");
    r.history = std::move(*h);
    items.add(r.history, "previous_response_id");
  }
  if (!present(j, "input")) bad_request("input", "'input' is required", "missing_required_parameter");
  const json& input = j["input"];
  if (input.is_string()) r.input_items.push_back({{"type", "message"}, {"role", "user"}, {"content", input}});
  else if (input.is_array() && !input.empty()) r.input_items = input;
  else bad_request("input", "'input' must be a string or a non-empty array of items");
  items.add(r.input_items, "input");

  // The chat request these stand for, which parse_chat_request checks as the chat route's.
  json c = {{"messages", messages}};
  if (present(j, "tools")) c["tools"] = function_tools(j["tools"]);
  if (present(j, "tool_choice")) {
    const json& tc = j["tool_choice"];
    if (tc != "auto" && tc != "none") bad_request("tool_choice", "only tool_choice \"auto\" and \"none\" are supported");
    c["tool_choice"] = tc;
  }
  if (present(j, "reasoning"))
    if (const std::string effort = effort_name(j["reasoning"]); !effort.empty()) c["reasoning_effort"] = effort;
  if (present(j, "max_output_tokens")) {
    const json& m = j["max_output_tokens"];
    if (!m.is_number_integer() || m.get<long long>() < 1 || m.get<long long>() > (1 << 30))
      bad_request("max_output_tokens", "'max_output_tokens' must be an integer in [1, 1073741824], got " + dump(m));
    c["max_tokens"] = m;
  }
  // text.format json_object / json_schema: chat's response_format, constrained the same way.
  if (present(j, "text") && present(j["text"], "format")) {
    const json& f = j["text"]["format"];
    if (f["type"] == "json_schema") {
      json js = f;
      js.erase("type");
      c["response_format"] = {{"type", "json_schema"}, {"json_schema", js}};
    } else {
      c["response_format"] = f;
    }
  }
  for (const char* key : {"temperature", "top_p", "top_k", "min_p", "seed", "stream", "dsv4_forced_text"})
    if (j.contains(key)) c[key] = j[key];
  if (present(j, "store")) {
    if (!j["store"].is_boolean()) bad_request("store", "'store' must be a boolean");
    r.store = j["store"].get<bool>();
  }
  if (present(j, "metadata")) {
    const json& m = j["metadata"];
    if (!m.is_object() || m.size() > 16) bad_request("metadata", "'metadata' must be an object of at most 16 keys");
    for (const auto& [key, value] : m.items())
      if (!value.is_string() || key.size() > 64 || value.get<std::string>().size() > 512)
        bad_request("metadata", "metadata: '" + key + "' must be a string of at most 512 characters (keys at most 64)");
  }
  for (const char* key : {"parallel_tool_calls"})
    if (present(j, key) && !j[key].is_boolean()) bad_request(key, std::string("'") + key + "' must be a boolean");
  if (present(j, "user") && !j["user"].is_string()) bad_request("user", "'user' must be a string");

  static_cast<ChatRequest&>(r) = parse_chat_request(dump(c), default_mode, test_hooks);
  if (present(j, "model") && j["model"].is_string()) r.model = j["model"].get<std::string>();

  const auto or_else = [&](const char* key, const json& def) { return present(j, key) ? j[key] : def; };
  json& e = r.echo;
  e["instructions"] = or_else("instructions", nullptr);
  e["max_output_tokens"] = or_else("max_output_tokens", nullptr);
  e["metadata"] = or_else("metadata", json::object());
  e["parallel_tool_calls"] = or_else("parallel_tool_calls", true);
  e["previous_response_id"] = or_else("previous_response_id", nullptr);
  e["reasoning"] = {{"effort", present(j, "reasoning") ? or_else("reasoning", json::object()).value("effort", json(nullptr))
                                                       : json(nullptr)},
                    {"summary", nullptr}};
  e["store"] = r.store;
  e["temperature"] = or_else("temperature", 1.0);
  e["text"] = {{"format", present(j, "text") && present(j["text"], "format") ? j["text"]["format"] : json{{"type", "text"}}}};
  e["tool_choice"] = or_else("tool_choice", "auto");
  e["tools"] = or_else("tools", json::array());
  e["top_p"] = or_else("top_p", 1.0);
  e["truncation"] = or_else("truncation", "disabled");
  if (present(j, "user")) e["user"] = j["user"];
  return r;
}

json response_object(const ResponseHead& h, const char* status, json output) {
  json o = {{"id", h.id}, {"object", "response"}, {"created_at", h.created_at}, {"status", status},
            {"error", nullptr}, {"incomplete_details", nullptr}, {"model", h.model}, {"output", std::move(output)}};
  for (const auto& [key, value] : h.echo.items()) o[key] = value;
  o["usage"] = nullptr;
  return o;
}

json finished_response(const ResponseHead& h, json output, const GenerateResult& r, int reasoning_tokens) {
  const bool incomplete = r.finish == FinishReason::length;
  json o = response_object(h, incomplete ? "incomplete" : "completed", std::move(output));
  if (incomplete) o["incomplete_details"] = {{"reason", "max_output_tokens"}};
  o["usage"] = usage(r, reasoning_tokens);
  return o;
}

json output_items(const chat::ParsedMessage& m, bool incomplete) {
  json out = json::array();
  if (!m.reasoning_content.empty()) out.push_back(reasoning_item(random_id("rs_"), m.reasoning_content));
  if (!m.content.empty() || m.tool_calls.empty())
    out.push_back(message_item(random_id("msg_"), incomplete && m.tool_calls.empty() ? "incomplete" : "completed",
                               json::array({text_part(m.content)})));
  for (const chat::ToolCall& t : m.tool_calls)
    out.push_back(call_item(random_id("fc_"), "completed", random_id("call_"), t.name, t.arguments));
  return out;
}

std::string ResponseEvents::event(json data) {
  data["sequence_number"] = sequence_++;
  return "event: " + data["type"].get<std::string>() + "\ndata: " + dump(data) + "\n\n";
}

std::string ResponseEvents::start() {
  const json r = response_object(head_, "in_progress", json::array());
  std::string out = event({{"type", "response.created"}, {"response", r}});
  return out + event({{"type", "response.in_progress"}, {"response", r}});
}

std::string ResponseEvents::open(Item kind, json item) {
  std::string out = close(false);
  open_ = kind;
  item_ = std::move(item);
  text_.clear();
  const size_t index = output_.size();
  out += event({{"type", "response.output_item.added"}, {"output_index", index}, {"item", item_}});
  if (kind == Item::reasoning)
    out += event({{"type", "response.content_part.added"}, {"item_id", item_["id"]}, {"output_index", index},
                  {"content_index", 0}, {"part", {{"type", "reasoning_text"}, {"text", ""}}}});
  if (kind == Item::message)
    out += event({{"type", "response.content_part.added"}, {"item_id", item_["id"]}, {"output_index", index},
                  {"content_index", 0}, {"part", text_part("")}});
  return out;
}

std::string ResponseEvents::close(bool incomplete) {
  if (open_ == Item::none) return "";
  const size_t index = output_.size();
  const json id = item_["id"];
  std::string out;
  json item;
  if (open_ == Item::reasoning) {
    out += event({{"type", "response.reasoning_text.done"}, {"item_id", id}, {"output_index", index},
                  {"content_index", 0}, {"text", text_}});
    out += event({{"type", "response.content_part.done"}, {"item_id", id}, {"output_index", index},
                  {"content_index", 0}, {"part", {{"type", "reasoning_text"}, {"text", text_}}}});
    item = reasoning_item(id, text_);
  } else if (open_ == Item::message) {
    out += event({{"type", "response.output_text.done"}, {"item_id", id}, {"output_index", index},
                  {"content_index", 0}, {"text", text_}, {"logprobs", json::array()}});
    out += event({{"type", "response.content_part.done"}, {"item_id", id}, {"output_index", index},
                  {"content_index", 0}, {"part", text_part(text_)}});
    item = message_item(id, incomplete ? "incomplete" : "completed", json::array({text_part(text_)}));
  } else {
    out += event({{"type", "response.function_call_arguments.done"}, {"item_id", id}, {"output_index", index},
                  {"name", item_["name"]}, {"arguments", text_}});
    item = call_item(id, "completed", item_["call_id"], item_["name"], text_);
  }
  out += event({{"type", "response.output_item.done"}, {"output_index", index}, {"item", item}});
  output_.push_back(std::move(item));
  open_ = Item::none;
  return out;
}

std::string ResponseEvents::delta(const chat::StreamDelta& d) {
  std::string out;
  const auto text_delta = [&](const char* type, const std::string& piece) {
    text_ += piece;
    json e = {{"type", type}, {"item_id", item_["id"]}, {"output_index", output_.size()}, {"content_index", 0},
              {"delta", piece}};
    if (open_ == Item::message) e["logprobs"] = json::array();
    out += event(std::move(e));
  };
  if (!d.reasoning_content.empty()) {
    if (open_ != Item::reasoning) out += open(Item::reasoning, {{"id", random_id("rs_")}, {"type", "reasoning"},
                                                                {"summary", json::array()}, {"content", json::array()}});
    text_delta("response.reasoning_text.delta", d.reasoning_content);
  }
  if (!d.content.empty()) {
    if (open_ != Item::message) out += open(Item::message, message_item(random_id("msg_"), "in_progress", json::array()));
    answered_ = true;
    text_delta("response.output_text.delta", d.content);
  }
  for (const chat::ToolCallDelta& t : d.tool_calls) {
    if (t.begin) out += open(Item::call, call_item(random_id("fc_"), "in_progress", random_id("call_"), t.name, ""));
    answered_ = true;
    if (t.arguments.empty() || open_ != Item::call) continue;
    text_ += t.arguments;
    out += event({{"type", "response.function_call_arguments.delta"}, {"item_id", item_["id"]},
                  {"output_index", output_.size()}, {"delta", t.arguments}});
  }
  return out;
}

std::string ResponseEvents::finish(const GenerateResult& r, int reasoning_tokens) {
  const bool incomplete = r.finish == FinishReason::length;
  std::string out;
  // An answer with neither text nor calls still has its (empty) message, as output_items.
  if (!answered_) out += open(Item::message, message_item(random_id("msg_"), "in_progress", json::array()));
  out += close(incomplete);
  response_ = finished_response(head_, output_, r, reasoning_tokens);
  return out + event({{"type", incomplete ? "response.incomplete" : "response.completed"}, {"response", response_}});
}

std::string ResponseEvents::fail(const std::string& message) {
  std::string out = close(true);
  out += event({{"type", "error"}, {"code", "server_error"}, {"message", message}, {"param", nullptr}});
  response_ = response_object(head_, "failed", output_);
  response_["error"] = {{"code", "server_error"}, {"message", message}};
  return out + event({{"type", "response.failed"}, {"response", response_}});
}

}  // namespace dsv4
