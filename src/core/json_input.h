// JSON from outside (request bodies, stdin, files) parsed with a bound on nesting. nlohmann's
// parser itself is iterative, but copying, dumping and the chat encoder's writer recurse once
// per level, so a body of a few hundred kilobytes nested 100,000 deep would overflow a thread's
// stack: deeper input is refused while it is parsed, before anything deep is built.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/check.h"

namespace dsv4 {

// Far beyond any real request (tool schemas nest a few levels), far below a stack's reach.
inline constexpr int kMaxJsonDepth = 128;

class JsonTooDeep : public Error {
 public:
  using Error::Error;
};

// Parses text; nlohmann's parse_error for malformed text, JsonTooDeep past max_depth levels.
template <typename Json = nlohmann::json>
Json parse_json(std::string_view text, int max_depth = kMaxJsonDepth) {
  return Json::parse(text.begin(), text.end(),
                     [max_depth](int depth, typename Json::parse_event_t event, Json&) {
                       if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
                           depth >= max_depth)
                         throw JsonTooDeep("JSON nested deeper than " + std::to_string(max_depth) + " levels");
                       return true;
                     });
}

}  // namespace dsv4
