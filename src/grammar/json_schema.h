// A JSON schema compiled for constrained decoding: the tree of value kinds the matcher
// (json_matcher.h) walks byte by byte. It owns the subset of JSON Schema that a byte-level
// pushdown matcher can enforce exactly, and refuses the rest by name rather than produce output
// that would not validate.
//
// Supported: type (one name or a list), properties, required, additionalProperties (false, true
// or a schema), items, minItems, maxItems, enum, const, anyOf whose branches start differently
// (say a string and null), minLength / maxLength, and the annotations (title, description,
// default, examples, $schema, $id, $comment, strict), which are ignored. Refused: $ref, oneOf,
// allOf, not, pattern, format, minimum / maximum and the other numeric bounds, if / then / else,
// and anything else unknown, each with the schema path in the message.
//
// The matcher writes a subset of what the schema allows, never more: properties are the declared
// ones (extra keys only where no properties are declared), each at most once, in any order; keys
// and literals in their canonical JSON spelling; numbers of at most kMaxDigits digits per part and
// exponents of two (so every number fits a double).
// Those choices are what keeps every output bounded for a bounded schema.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dsv4 {

struct SchemaNode {
  enum class Kind { object, array, string, number, integer, literals, choice };
  Kind kind = Kind::object;
  // object: the declared properties (name as its JSON text without quotes), the required ones
  // as a bit mask; free_value: the schema of undeclared keys' values (null: none allowed).
  std::vector<std::string> keys;
  std::vector<const SchemaNode*> values;
  uint64_t required = 0;
  const SchemaNode* free_value = nullptr;
  // array
  const SchemaNode* items = nullptr;
  int min_items = 0, max_items = -1;  // -1: no bound
  // string, in characters (code points)
  int min_length = 0, max_length = -1;
  // literals: the JSON texts of enum / const / true / false / null values
  std::vector<std::string> literals;
  // choice: branches told apart by their first byte
  std::vector<const SchemaNode*> branches;

  // Whether a value of this node can start with byte b.
  bool starts_with(uint8_t b) const;
};

class JsonSchema {
 public:
  // Throws Error naming the schema path and the keyword that cannot be enforced.
  static std::shared_ptr<const JsonSchema> compile(const nlohmann::json& schema);
  // Any JSON object (response_format json_object).
  static std::shared_ptr<const JsonSchema> any_object();

  const SchemaNode* root() const { return root_; }

  static constexpr int kMaxProperties = 64;  // declared keys of one object (a bit mask)
  static constexpr int kMaxLiterals = 64;    // enum values
  static constexpr int kMaxDigits = 16;      // digits of an integer part and a fraction (2 of an exponent)

 private:
  const SchemaNode* add(SchemaNode n);
  const SchemaNode* node(const nlohmann::json& s, const std::string& path, int depth);
  const SchemaNode* typed(const std::string& type, const nlohmann::json& s, const std::string& path, int depth);
  const SchemaNode* any_value();

  std::vector<std::unique_ptr<SchemaNode>> nodes_;
  const SchemaNode* root_ = nullptr;
  const SchemaNode* any_ = nullptr;
};

}  // namespace dsv4
