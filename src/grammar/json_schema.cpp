#include "grammar/json_schema.h"

#include <cmath>
#include <set>

#include "core/check.h"
#include "grammar/chat_markers.h"

namespace dsv4 {

using json = nlohmann::json;

namespace {

constexpr int kMaxDepth = 32;  // nesting of the schema itself

bool is_digit_start(uint8_t b) { return b == '-' || (b >= '0' && b <= '9'); }

// Keywords that describe without constraining.
const std::set<std::string>& annotations() {
  static const std::set<std::string> a = {"title", "description", "default", "examples", "$schema", "$id",
                                          "$comment", "strict", "deprecated", "readOnly", "writeOnly"};
  return a;
}

// The keywords each type enforces; everything else is refused by name.
const std::set<std::string>& keywords_of(const std::string& type) {
  static const std::set<std::string> object = {"type", "properties", "required", "additionalProperties"};
  static const std::set<std::string> array = {"type", "items", "minItems", "maxItems"};
  static const std::set<std::string> string = {"type", "minLength", "maxLength"};
  static const std::set<std::string> plain = {"type"};
  if (type == "object") return object;
  if (type == "array") return array;
  if (type == "string") return string;
  return plain;
}

int count_of(const json& s, const char* key, const std::string& path, int if_absent) {
  if (!s.contains(key)) return if_absent;
  const json& v = s[key];
  DSV4_CHECK(v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() <= 1000000, path, ".", key,
             " must be an integer in [0, 1000000]");
  return static_cast<int>(v.get<long long>());
}

// Whether v is of the type (a name or a list of names).
bool of_type(const json& v, const json& type, const std::string& path) {
  if (type.is_array()) {
    for (const auto& t : type)
      if (of_type(v, t, path)) return true;
    return false;
  }
  DSV4_CHECK(type.is_string(), path, ".type must be a type name or a list of them");
  const std::string t = type.get<std::string>();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  fail(path, ".type '", t, "' is not a JSON Schema type");
}

}  // namespace

bool SchemaNode::starts_with(uint8_t b) const {
  switch (kind) {
    case Kind::object: return b == '{';
    case Kind::array: return b == '[';
    case Kind::string: return b == '"';
    case Kind::number:
    case Kind::integer: return is_digit_start(b);
    case Kind::literals:
      for (const auto& l : literals)
        if (static_cast<uint8_t>(l[0]) == b) return true;
      return false;
    case Kind::choice:
      for (const SchemaNode* n : branches)
        if (n->starts_with(b)) return true;
      return false;
  }
  return false;
}

const SchemaNode* JsonSchema::add(SchemaNode n) {
  nodes_.push_back(std::make_unique<SchemaNode>(std::move(n)));
  return nodes_.back().get();
}

// Any JSON value: a choice over the kinds, objects and arrays of any values inside.
const SchemaNode* JsonSchema::any_value() {
  if (any_) return any_;
  auto* choice = nodes_.emplace_back(std::make_unique<SchemaNode>()).get();
  choice->kind = SchemaNode::Kind::choice;
  any_ = choice;
  SchemaNode object;
  object.free_value = any_;
  SchemaNode array;
  array.kind = SchemaNode::Kind::array;
  array.items = any_;
  SchemaNode string, number, literals;
  string.kind = SchemaNode::Kind::string;
  number.kind = SchemaNode::Kind::number;
  literals.kind = SchemaNode::Kind::literals;
  literals.literals = {"true", "false", "null"};
  choice->branches = {add(std::move(object)), add(std::move(array)), add(std::move(string)), add(std::move(number)),
                      add(std::move(literals))};
  return any_;
}

std::shared_ptr<const JsonSchema> JsonSchema::any_object() {
  auto s = std::make_shared<JsonSchema>(JsonSchema());
  SchemaNode object;
  object.free_value = s->any_value();
  s->root_ = s->add(std::move(object));
  return s;
}

std::shared_ptr<const JsonSchema> JsonSchema::compile(const json& schema) {
  auto s = std::make_shared<JsonSchema>(JsonSchema());
  s->root_ = s->node(schema, "schema", 0);
  return s;
}

const SchemaNode* JsonSchema::node(const json& s, const std::string& path, int depth) {
  DSV4_CHECK(depth < kMaxDepth, path, ": the schema nests deeper than ", kMaxDepth, " levels");
  if (s.is_boolean()) {
    DSV4_CHECK(s.get<bool>(), path, ": the schema false allows no value");
    return any_value();
  }
  DSV4_CHECK(s.is_object(), path, " must be a schema object");
  for (const char* refused : {"$ref", "$defs", "definitions", "oneOf", "allOf", "not", "if", "then", "else", "pattern",
                              "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                              "patternProperties", "propertyNames", "minProperties", "maxProperties",
                              "uniqueItems", "contains", "prefixItems", "dependentRequired", "dependentSchemas"})
    DSV4_CHECK(!s.contains(refused), path, ": '", refused, "' is not supported in constrained decoding");

  if (s.contains("enum") || s.contains("const")) {
    for (const auto& [key, v] : s.items())
      DSV4_CHECK(key == "enum" || key == "const" || key == "type" || annotations().count(key), path, ": '", key,
                 "' beside enum / const is not supported");
    SchemaNode n;
    n.kind = SchemaNode::Kind::literals;
    DSV4_CHECK(!(s.contains("const") && s.contains("enum")), path, ": both enum and const");
    json values = json::array();
    if (s.contains("const")) values.push_back(s["const"]);
    if (s.contains("enum")) {
      values = s["enum"];
      DSV4_CHECK(values.is_array() && !values.empty(), path, ".enum must be a non-empty array");
      DSV4_CHECK(values.size() <= kMaxLiterals, path, ".enum has ", values.size(), " values; at most ", kMaxLiterals);
    }
    // A type beside them keeps the values of that type only (a value of another would not validate).
    for (const auto& v : values)
      if (!s.contains("type") || of_type(v, s["type"], path)) n.literals.push_back(v.dump());
    DSV4_CHECK(!n.literals.empty(), path, ": no value of enum / const is of the type ", s["type"].dump());
    for (const std::string& l : n.literals)
      DSV4_CHECK(!MarkerWindow::contains_marker(l), path, ": the value ", l, " spells a chat-format marker (",
                 "<think>, </think>, <｜, </｜ or ｜DSML), which the answer's parser would act on");
    return add(std::move(n));
  }
  if (s.contains("anyOf")) {
    const json& a = s["anyOf"];
    DSV4_CHECK(a.is_array() && !a.empty(), path, ".anyOf must be a non-empty array");
    for (const auto& [key, v] : s.items())
      DSV4_CHECK(key == "anyOf" || annotations().count(key), path, ": '", key, "' beside anyOf is not supported");
    SchemaNode n;
    n.kind = SchemaNode::Kind::choice;
    for (size_t i = 0; i < a.size(); ++i) n.branches.push_back(node(a[i], path + ".anyOf[" + std::to_string(i) + "]", depth + 1));
    for (int b = 0; b < 256; ++b) {  // the first byte decides the branch
      int starts = 0;
      for (const SchemaNode* x : n.branches) starts += x->starts_with(static_cast<uint8_t>(b));
      DSV4_CHECK(starts <= 1, path, ".anyOf: two branches can start with '", static_cast<char>(b),
                 "'; only branches of different types are supported");
    }
    return add(std::move(n));
  }
  if (!s.contains("type")) {  // no type: whatever the other keywords say, or any value
    if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties")) return typed("object", s, path, depth);
    if (s.contains("items")) return typed("array", s, path, depth);
    for (const auto& [key, v] : s.items())
      DSV4_CHECK(annotations().count(key), path, ": '", key, "' without a type is not supported");
    return any_value();
  }
  const json& t = s["type"];
  if (t.is_string()) return typed(t.get<std::string>(), s, path, depth);
  DSV4_CHECK(t.is_array() && !t.empty(), path, ".type must be a type name or a non-empty list of them");
  SchemaNode n;
  n.kind = SchemaNode::Kind::choice;
  std::set<std::string> seen;
  for (const auto& name : t) {
    DSV4_CHECK(name.is_string(), path, ".type lists a non-string");
    const std::string k = name.get<std::string>();
    DSV4_CHECK(seen.insert(k).second, path, ".type lists '", k, "' twice");
    DSV4_CHECK(!(k == "number" && seen.count("integer")) && !(k == "integer" && seen.count("number")), path,
               ".type: number and integer together; say number");
    n.branches.push_back(typed(k, s, path, depth));
  }
  return n.branches.size() == 1 ? n.branches[0] : add(std::move(n));
}

const SchemaNode* JsonSchema::typed(const std::string& type, const json& s, const std::string& path, int depth) {
  const std::set<std::string>& own = keywords_of(type);
  // A keyword of another type listed beside this one ("type": ["string", "null"] with
  // maxLength) belongs to that type; one of no type listed is refused.
  const bool listed = s.contains("type") && s["type"].is_array();
  for (const auto& [key, v] : s.items()) {
    if (own.count(key) || annotations().count(key)) continue;
    const bool other = keywords_of("object").count(key) || keywords_of("array").count(key) ||
                       keywords_of("string").count(key);
    DSV4_CHECK(listed && other, path, ": '", key, "' is not supported for type ", type);
  }
  SchemaNode n;
  if (type == "object") {
    n.kind = SchemaNode::Kind::object;
    if (s.contains("properties")) {
      const json& p = s["properties"];
      DSV4_CHECK(p.is_object(), path, ".properties must be an object");
      DSV4_CHECK(p.size() <= kMaxProperties, path, ".properties has ", p.size(), " keys; at most ", kMaxProperties);
      for (const auto& [key, v] : p.items()) {
        const std::string text = json(key).dump();
        DSV4_CHECK(!MarkerWindow::contains_marker(text), path, ".properties: the key ", text,
                   " spells a chat-format marker (<think>, </think>, <｜, </｜ or ｜DSML), which the answer's parser would act on");
        n.keys.push_back(text.substr(1, text.size() - 2));
        n.values.push_back(node(v, path + ".properties." + key, depth + 1));
      }
    }
    if (s.contains("required")) {
      const json& r = s["required"];
      DSV4_CHECK(r.is_array(), path, ".required must be an array of property names");
      for (const auto& name : r) {
        DSV4_CHECK(name.is_string(), path, ".required lists a non-string");
        const std::string text = json(name).dump();
        const std::string key = text.substr(1, text.size() - 2);
        size_t i = 0;
        while (i < n.keys.size() && n.keys[i] != key) ++i;
        DSV4_CHECK(i < n.keys.size(), path, ".required names '", name.get<std::string>(), "', which is not in properties");
        n.required |= uint64_t{1} << i;
      }
    }
    // Declared properties: only those are written (a subset of what any additionalProperties
    // allows). None declared: keys are free unless additionalProperties is false.
    if (n.keys.empty()) {
      const json ap = s.value("additionalProperties", json(true));
      if (ap.is_object()) n.free_value = node(ap, path + ".additionalProperties", depth + 1);
      else if (!ap.is_boolean()) fail(path, ".additionalProperties must be a boolean or a schema");
      else if (ap.get<bool>()) n.free_value = any_value();
    }
  } else if (type == "array") {
    n.kind = SchemaNode::Kind::array;
    n.items = s.contains("items") ? node(s["items"], path + ".items", depth + 1) : any_value();
    n.min_items = count_of(s, "minItems", path, 0);
    n.max_items = count_of(s, "maxItems", path, -1);
    DSV4_CHECK(n.max_items < 0 || n.max_items >= n.min_items, path, ": maxItems < minItems");
  } else if (type == "string") {
    n.kind = SchemaNode::Kind::string;
    n.min_length = count_of(s, "minLength", path, 0);
    n.max_length = count_of(s, "maxLength", path, -1);
    DSV4_CHECK(n.max_length < 0 || n.max_length >= n.min_length, path, ": maxLength < minLength");
  } else if (type == "number" || type == "integer") {
    n.kind = type == "number" ? SchemaNode::Kind::number : SchemaNode::Kind::integer;
  } else if (type == "boolean") {
    n.kind = SchemaNode::Kind::literals;
    n.literals = {"true", "false"};
  } else if (type == "null") {
    n.kind = SchemaNode::Kind::literals;
    n.literals = {"null"};
  } else {
    fail(path, ".type '", type, "' is not a JSON Schema type");
  }
  return add(std::move(n));
}

}  // namespace dsv4
