// The DeepSeek-V4 prompt encoder; see encode.h. The steps follow the official encode_messages:
// validate, merge tool messages into user turns, sort tool results by call order, drop old
// reasoning, then render each message and the transition to the next speaker.
#include "chat/encode.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>

#include "chat/python_json.h"
#include "core/check.h"
#include "core/json_input.h"

namespace dsv4::chat {

using json = nlohmann::ordered_json;

namespace {

constexpr std::string_view reasoning_effort_max_preamble =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

// V4-Flash-0731's "max" (REASONING_EFFORT_PROMPTS["max"]; its "high" is the April max text).
constexpr std::string_view reasoning_effort_0731_max_preamble =
    "Reasoning Effort: Beyond maximum \u2014 exhaustive, relentless, and uncompromising.\n"
    "You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: exhaustively decompose "
    "the problem into its most fundamental components, trace every causal chain to its root, and resolve the "
    "underlying cause rather than any surface symptom.\n"
    "Do not stop reasoning until you have independently verified the solution from multiple angles and are certain "
    "that no assumption remains unchecked and no error remains undiscovered.\n\n";

std::string_view effort_preamble(ChatFormat format, ReasoningEffort effort) {
  if (format == ChatFormat::april) return effort == ReasoningEffort::max ? reasoning_effort_max_preamble : "";
  switch (effort) {
    case ReasoningEffort::high: return reasoning_effort_max_preamble;
    case ReasoningEffort::max: return reasoning_effort_0731_max_preamble;
    default: return "";
  }
}

// The official TOOLS_TEMPLATE with its DSML and thinking tokens filled in; the schemas go
// between head and tail, one JSON line per tool.
constexpr std::string_view tools_head = R"TOOLS(## Tools

You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "<｜DSML｜tool_calls>" block like the following:

<｜DSML｜tool_calls>
<｜DSML｜invoke name="$TOOL_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$TOOL_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜tool_calls>

String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string="false"`.

If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside <think>...</think> BEFORE any tool calls or final response.

Otherwise, output directly after </think> with tool calls or final response.

### Available Tool Schemas

)TOOLS";
constexpr std::string_view tools_tail =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

constexpr std::string_view response_format_head =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

constexpr std::array<std::string_view, 6> roles = {"system", "user", "assistant", "tool", "latest_reminder",
                                                   "developer"};

// Quick-instruction tasks: a message's "task" appends its token to steer a one-off output.
struct Task {
  std::string_view name, token;
};
constexpr std::array<Task, 6> tasks = {{{"action", "<｜action｜>"},
                                        {"query", "<｜query｜>"},
                                        {"authority", "<｜authority｜>"},
                                        {"domain", "<｜domain｜>"},
                                        {"title", "<｜title｜>"},
                                        {"read_url", "<｜read_url｜>"}}};

// ---- Python-style access to JSON objects: a missing key reads as None ----

const json* field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool is_none(const json* v) { return !v || v->is_null(); }

// Python's bool(): null, false, 0, "", [] and {} are false.
bool truthy(const json* v) {
  if (!v) return false;
  switch (v->type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return v->get<bool>();
    case json::value_t::number_integer: return v->get<int64_t>() != 0;
    case json::value_t::number_unsigned: return v->get<uint64_t>() != 0;
    case json::value_t::number_float: return v->get<double>() != 0.0;
    case json::value_t::string: return !v->get_ref<const std::string&>().empty();
    default: return !v->empty();  // arrays and objects (empty() is false for any scalar)
  }
}

// `msg.get(key) or ""` for a field validated to be a string or null.
std::string string_or_empty(const json& obj, const char* key) {
  const json* v = field(obj, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

const std::string& role_of(const json& msg) { return msg.at("role").get_ref<const std::string&>(); }

bool task_is_none(const json& msg) { return is_none(field(msg, "task")); }

// ---- validation: everything the renderer relies on, checked once with the message's place ----

void check_string_or_null(const json& obj, const char* key, const std::string& where) {
  const json* v = field(obj, key);
  DSV4_CHECK(is_none(v) || v->is_string(), where, ".", key, " must be a string or null, got ", v->type_name());
}

// The official encoder reads tool-call arguments with json.loads and falls back to one string
// parameter named "arguments" when they are not JSON. Python's json.loads rejects a leading
// byte-order mark; nlohmann skips it, so it is refused here by hand. nullopt: JSON, but not an object.
std::optional<json> arguments_object(const std::string& raw) {
  json args;
  bool parsed = false;
  if (!raw.starts_with("\xEF\xBB\xBF")) {
    try {
      args = parse_json<json>(raw);  // JsonTooDeep is no fallback case: it is refused
      parsed = true;
    } catch (const json::exception&) {
    }
  }
  if (!parsed) {
    args = json::object();
    args["arguments"] = raw;
  }
  if (!args.is_object()) return std::nullopt;
  return args;
}

void validate_tools(const json& tools, const std::string& where) {
  DSV4_CHECK(tools.is_array(), where, " must be an array of tools, got ", tools.type_name());
  for (size_t i = 0; i < tools.size(); ++i) {
    const json* fn = tools[i].is_object() ? field(tools[i], "function") : nullptr;
    DSV4_CHECK(fn && fn->is_object(), where, "[", i,
               "] must be an OpenAI tool object {\"type\": \"function\", \"function\": {...}}");
  }
}

void validate_tool_calls(const json& calls, const std::string& where) {
  DSV4_CHECK(calls.is_array(), where, " must be an array, got ", calls.type_name());
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const json& tc = calls[i];
    DSV4_CHECK(tc.is_object(), at, " must be an object, got ", tc.type_name());
    check_string_or_null(tc, "id", at);
    const json* fn = field(tc, "function");
    DSV4_CHECK(fn && fn->is_object(), at, " has no \"function\" object");
    check_string_or_null(*fn, "id", at + ".function");
    const json* name = field(*fn, "name");
    DSV4_CHECK(name && name->is_string(), at, ".function.name must be a string");
    const json* args = field(*fn, "arguments");
    DSV4_CHECK(args && args->is_string(), at, ".function.arguments must be a JSON string, got ",
               args ? args->type_name() : "nothing");
    DSV4_CHECK(arguments_object(args->get<std::string>()), at,
               ".function.arguments must encode a JSON object, got: ", args->get<std::string>());
  }
}

// A tool message's content: a string or a list of content parts.
void validate_tool_content(const json& content, const std::string& where) {
  if (content.is_string()) return;
  DSV4_CHECK(content.is_array(), where, " must be a string or a list of content parts, got ", content.type_name());
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    DSV4_CHECK(content[i].is_object(), at, " must be an object, got ", content[i].type_name());
    check_string_or_null(content[i], "type", at);
    const json* text = field(content[i], "text");
    DSV4_CHECK(!text || text->is_string(), at, ".text must be a string, got ", text ? text->type_name() : "");
  }
}

void validate_message(const json& msg, const std::string& where) {
  DSV4_CHECK(msg.is_object(), where, " must be an object, got ", msg.type_name());
  const json* role = field(msg, "role");
  DSV4_CHECK(role && role->is_string(), where, " has no string \"role\"");
  const std::string& r = role->get_ref<const std::string&>();
  DSV4_CHECK(std::find(roles.begin(), roles.end(), r) != roles.end(), where, " has unknown role '", r,
             "' (known: system, user, assistant, tool, latest_reminder, developer)");
  const json* content = field(msg, "content");
  if (r == "system" || r == "assistant") {
    check_string_or_null(msg, "content", where);
  } else if (r == "developer") {
    DSV4_CHECK(content && content->is_string() && !content->get_ref<const std::string&>().empty(), where,
               " (developer) needs a non-empty string content");
  } else if (r == "user") {
    DSV4_CHECK(!content || content->is_string(), where, ".content must be a string, got ", content->type_name());
  } else if (r == "latest_reminder") {
    DSV4_CHECK(content && content->is_string(), where, " (latest_reminder) needs a string content");
  } else if (r == "tool") {
    if (content) validate_tool_content(*content, where + ".content");
    check_string_or_null(msg, "tool_call_id", where);
  }
  if (r == "assistant") {
    check_string_or_null(msg, "reasoning_content", where);
    if (const json* calls = field(msg, "tool_calls"); !is_none(calls))
      validate_tool_calls(*calls, where + ".tool_calls");
  }
  if (const json* tools = field(msg, "tools"); !is_none(tools)) validate_tools(*tools, where + ".tools");
  if (const json* task = field(msg, "task"); !is_none(task)) {
    const bool known = task->is_string() && std::any_of(tasks.begin(), tasks.end(), [&](const Task& t) {
                         return t.name == task->get_ref<const std::string&>();
                       });
    DSV4_CHECK(known, where, ".task must be one of action, query, authority, domain, title, read_url; got ",
               task->dump());
  }
}

void validate_messages(const json& messages, const std::string& name) {
  DSV4_CHECK(messages.is_array(), name, " must be an array of messages, got ", messages.type_name());
  for (size_t i = 0; i < messages.size(); ++i) validate_message(messages[i], name + "[" + std::to_string(i) + "]");
}

// ---- preprocessing, as the official merge_tool_messages / sort / _drop_thinking_messages ----

bool is_user_with_blocks(const json& msg) { return role_of(msg) == "user" && msg.contains("content_blocks"); }

// There is no tool role in the V4 format: each tool result becomes a <tool_result> block of a
// user turn, and consecutive tool results and user texts share one turn (unless that turn
// carries a task). Every user message is rebuilt from its content, so any content_blocks a
// caller put on a user message are replaced, as the official encoder does.
json merge_tool_messages(const json& messages) {
  json merged = json::array();
  for (const json& msg : messages) {
    const std::string& role = role_of(msg);
    if (role == "tool") {
      json block = json::object();
      block["type"] = "tool_result";
      block["tool_use_id"] = msg.contains("tool_call_id") ? msg["tool_call_id"] : json("");
      block["content"] = msg.contains("content") ? msg["content"] : json("");
      if (!merged.empty() && is_user_with_blocks(merged.back())) {
        merged.back()["content_blocks"].push_back(std::move(block));
      } else {
        json user = json::object();
        user["role"] = "user";
        user["content_blocks"] = json::array({std::move(block)});
        merged.push_back(std::move(user));
      }
    } else if (role == "user") {
      const json content = msg.contains("content") ? msg["content"] : json("");
      json block = json::object();
      block["type"] = "text";
      block["text"] = content;
      if (!merged.empty() && is_user_with_blocks(merged.back()) && task_is_none(merged.back())) {
        merged.back()["content_blocks"].push_back(std::move(block));
      } else {
        json user = json::object();
        user["role"] = "user";
        user["content"] = content;
        user["content_blocks"] = json::array({std::move(block)});
        for (const char* key : {"task", "wo_eos", "mask"})
          if (msg.contains(key)) user[key] = msg[key];
        merged.push_back(std::move(user));
      }
    } else {
      merged.push_back(msg);
    }
  }
  return merged;
}

// Tool results are put in the order of the calls of the latest assistant turn with tool
// calls, matched by id; unmatched ids sort as position 0 (the sort is stable).
void sort_tool_results_by_call_order(json& messages) {
  std::map<std::string, size_t> call_order;
  for (json& msg : messages) {
    const std::string& role = role_of(msg);
    if (role == "assistant" && truthy(field(msg, "tool_calls"))) {
      call_order.clear();
      const json& calls = msg["tool_calls"];
      for (size_t i = 0; i < calls.size(); ++i) {
        std::string id = string_or_empty(calls[i], "id");
        if (id.empty()) id = string_or_empty(calls[i]["function"], "id");
        if (!id.empty()) call_order[id] = i;
      }
    } else if (role == "user" && truthy(field(msg, "content_blocks"))) {
      json& blocks = msg["content_blocks"];
      std::vector<json> results;
      for (const json& b : blocks)
        if (string_or_empty(b, "type") == "tool_result") results.push_back(b);
      if (results.size() < 2 || call_order.empty()) continue;
      const auto position = [&](const json& b) {
        const auto it = call_order.find(string_or_empty(b, "tool_use_id"));
        return it == call_order.end() ? size_t{0} : it->second;
      };
      std::stable_sort(results.begin(), results.end(),
                       [&](const json& a, const json& b) { return position(a) < position(b); });
      size_t next = 0;
      for (json& b : blocks)
        if (string_or_empty(b, "type") == "tool_result") b = results[next++];
    }
  }
}

ptrdiff_t last_user_index(const json& messages) {
  for (ptrdiff_t i = static_cast<ptrdiff_t>(messages.size()) - 1; i >= 0; --i) {
    const std::string& role = role_of(messages[i]);
    if (role == "user" || role == "developer") return i;
  }
  return -1;
}

// Before the last user turn, assistant turns lose their reasoning and developer turns go.
json drop_thinking_messages(const json& messages) {
  const ptrdiff_t last_user = last_user_index(messages);
  json out = json::array();
  for (ptrdiff_t i = 0; i < static_cast<ptrdiff_t>(messages.size()); ++i) {
    const json& msg = messages[i];
    const std::string& role = role_of(msg);
    if (role == "user" || role == "system" || role == "tool" || role == "latest_reminder" || i >= last_user) {
      out.push_back(msg);
    } else if (role == "assistant") {
      json copy = msg;
      copy.erase("reasoning_content");
      out.push_back(std::move(copy));
    }
  }
  return out;
}

// ---- rendering ----

std::string response_format_section(const json& format) {
  return std::string(response_format_head) + to_python_json(format);
}

// `<｜DSML｜parameter name="k" string="true|false">v</｜DSML｜parameter>` lines: strings as is,
// everything else as Python JSON.
std::string encode_arguments_to_dsml(const std::string& raw_arguments) {
  const std::optional<json> args = arguments_object(raw_arguments);
  DSV4_CHECK(args, "tool-call arguments must encode a JSON object: ", raw_arguments);
  std::string out;
  for (const auto& [key, value] : args->items()) {
    if (!out.empty()) out += '\n';
    out += "<｜DSML｜parameter name=\"" + key + "\" string=\"" + (value.is_string() ? "true" : "false") + "\">";
    out += value.is_string() ? value.get<std::string>() : to_python_json(value);
    out += "</｜DSML｜parameter>";
  }
  return out;
}

std::string render_tool_calls(const json& calls) {
  std::string out = "\n\n<｜DSML｜tool_calls>\n";
  for (size_t i = 0; i < calls.size(); ++i) {
    const json& fn = calls[i]["function"];
    if (i) out += '\n';
    out += "<｜DSML｜invoke name=\"" + fn["name"].get<std::string>() + "\">\n" +
           encode_arguments_to_dsml(fn["arguments"].get<std::string>()) + "\n</｜DSML｜invoke>";
  }
  return out + "\n</｜DSML｜tool_calls>";
}

// A tool result's content: a string, or content parts of which only text survives.
std::string tool_result_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    if (i) out += "\n\n";
    const json& part = content[i];
    const json* type = field(part, "type");
    if (type && type->is_string() && type->get_ref<const std::string&>() == "text")
      out += string_or_empty(part, "text");
    else
      out += "[Unsupported " + (is_none(type) ? std::string("None") : type->get<std::string>()) + "]";
  }
  return out;
}

std::string render_content_blocks(const json& blocks) {
  std::string out;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i) out += "\n\n";
    const json& block = blocks[i];
    const json* type = field(block, "type");
    const std::string t = type && type->is_string() ? type->get<std::string>() : "None";
    if (t == "text") {
      out += string_or_empty(block, "text");
    } else if (t == "tool_result") {
      const json* content = field(block, "content");
      out += "<tool_result>" + (content ? tool_result_text(*content) : std::string()) + "</tool_result>";
    } else {
      out += "[Unsupported " + t + "]";
    }
  }
  return out;
}

struct RenderContext {
  const json& messages;
  ptrdiff_t last_user;
  ThinkingMode mode;
  ReasoningEffort effort;
  ChatFormat format;
  bool drop_thinking;
};

std::string render_message(const RenderContext& c, ptrdiff_t index) {
  const json& msg = c.messages[index];
  const std::string& role = role_of(msg);
  const bool thinking = c.mode == ThinkingMode::thinking;
  std::string prompt;
  if (index == 0 && thinking) prompt += effort_preamble(c.format, c.effort);

  const json* tools = field(msg, "tools");
  const json* response_format = field(msg, "response_format");
  if (role == "system" || role == "developer") {
    if (role == "developer") prompt += user_token;
    prompt += string_or_empty(msg, "content");
    if (truthy(tools)) prompt += "\n\n" + render_tools(*tools);
    if (truthy(response_format)) prompt += "\n\n" + response_format_section(*response_format);
  } else if (role == "user") {
    prompt += user_token;
    const json* blocks = field(msg, "content_blocks");
    prompt += truthy(blocks) ? render_content_blocks(*blocks) : string_or_empty(msg, "content");
  } else if (role == "latest_reminder") {
    prompt += std::string(latest_reminder_token) + string_or_empty(msg, "content");
  } else if (role == "assistant") {
    // The "<think>" opening this turn's reasoning was written by the turn before (see the
    // transition below); a turn answering a task has no thinking block at all.
    const bool prev_has_task = index >= 1 && !task_is_none(c.messages[index - 1]);
    if (thinking && !prev_has_task && (!c.drop_thinking || index > c.last_user))
      prompt += string_or_empty(msg, "reasoning_content") + std::string(think_end);
    prompt += string_or_empty(msg, "content");
    if (const json* calls = field(msg, "tool_calls"); truthy(calls)) prompt += render_tool_calls(*calls);
    if (!truthy(field(msg, "wo_eos"))) prompt += eos_token;
  } else {
    // Tool messages were merged into user turns and roles validated before rendering.
    fail("cannot render a message with role '", role, "'");
  }

  // What follows the message: nothing when another non-assistant turn comes next, else the
  // task token or the assistant prefix that hands the turn to the model.
  const bool last = index + 1 == static_cast<ptrdiff_t>(c.messages.size());
  if (!last) {
    const std::string& next = role_of(c.messages[index + 1]);
    if (next != "assistant" && next != "latest_reminder") return prompt;
  }
  if (const json* task = field(msg, "task"); !is_none(task)) {
    const std::string& name = task->get_ref<const std::string&>();
    const auto t = std::find_if(tasks.begin(), tasks.end(), [&](const Task& x) { return x.name == name; });
    if (name != "action") {
      prompt += t->token;
    } else {
      prompt += std::string(assistant_token) + std::string(thinking ? think_start : think_end) + std::string(t->token);
    }
  } else if (role == "user" || role == "developer") {
    prompt += assistant_token;
    const bool open_thinking = thinking && (!c.drop_thinking || index >= c.last_user);
    prompt += open_thinking ? think_start : think_end;
  }
  return prompt;
}

}  // namespace

ThinkingMode parse_thinking_mode(std::string_view name) {
  if (name == "chat") return ThinkingMode::chat;
  if (name == "thinking") return ThinkingMode::thinking;
  fail("unknown thinking mode '", name, "' (expected chat or thinking)");
}

ReasoningEffort parse_reasoning_effort(std::string_view name) {
  if (name == "none") return ReasoningEffort::none;
  if (name == "low") return ReasoningEffort::low;
  if (name == "high") return ReasoningEffort::high;
  if (name == "max") return ReasoningEffort::max;
  fail("unknown reasoning effort '", name, "' (expected none, low, high or max)");
}

ChatFormat parse_chat_format(std::string_view name) {
  if (name == "april") return ChatFormat::april;
  if (name == "0731") return ChatFormat::v0731;
  fail("unknown chat format '", name, "' (expected april or 0731)");
}

const char* chat_format_name(ChatFormat f) { return f == ChatFormat::april ? "april" : "0731"; }

std::string render_tools(const json& tools) {
  validate_tools(tools, "tools");
  std::string out(tools_head);
  for (size_t i = 0; i < tools.size(); ++i) {
    if (i) out += '\n';
    out += to_python_json(tools[i]["function"]);
  }
  return out + std::string(tools_tail);
}

json attach_tools(json messages, const json& tools) {
  if (tools.is_null() || (tools.is_array() && tools.empty())) return messages;
  validate_tools(tools, "tools");
  DSV4_CHECK(messages.is_array(), "messages must be an array of messages, got ", messages.type_name());
  const bool first_is_system = !messages.empty() && messages[0].is_object() && messages[0].contains("role") &&
                               messages[0]["role"] == "system";
  if (first_is_system) {
    json& system = messages[0];
    DSV4_CHECK(!truthy(field(system, "tools")),
               "tools are given both beside the messages and on the system message messages[0]");
    system["tools"] = tools;
  } else {
    json system = json::object();
    system["role"] = "system";
    system["content"] = "";
    system["tools"] = tools;
    messages.insert(messages.begin(), std::move(system));
  }
  return messages;
}

std::string encode_messages(const json& messages, const EncodeOptions& options, const json& context) {
  validate_messages(messages, "messages");
  validate_messages(context, "context");
  const json merged_context = merge_tool_messages(context);
  const json merged = merge_tool_messages(messages);
  // Sorting looks back at the calls of the latest assistant turn, which may lie in the context.
  json full = merged_context;
  full.insert(full.end(), merged.begin(), merged.end());
  sort_tool_results_by_call_order(full);

  std::string prompt = options.add_bos && merged_context.empty() ? std::string(bos_token) : std::string();
  const bool any_tools = std::any_of(full.begin(), full.end(), [](const json& m) { return truthy(field(m, "tools")); });
  const bool drop = options.drop_thinking && !any_tools;
  ptrdiff_t first = static_cast<ptrdiff_t>(merged_context.size());
  ptrdiff_t count = static_cast<ptrdiff_t>(merged.size());
  if (options.thinking_mode == ThinkingMode::thinking && drop) {
    full = drop_thinking_messages(full);
    // As the official encoder counts: the context is thinned on its own, so a developer turn
    // kept there but dropped from the whole can shorten what is rendered.
    first = static_cast<ptrdiff_t>(drop_thinking_messages(merged_context).size());
    count = static_cast<ptrdiff_t>(full.size()) - first;
  }
  DSV4_CHECK(options.format != ChatFormat::april || options.reasoning_effort != ReasoningEffort::low,
             "reasoning effort 'low' is a V4-Flash-0731 level: the April encoder knows none, high and max");
  const RenderContext c{full, last_user_index(full), options.thinking_mode, options.reasoning_effort, options.format,
                        drop};
  for (ptrdiff_t i = 0; i < count; ++i) prompt += render_message(c, first + i);
  return prompt;
}

}  // namespace dsv4::chat
