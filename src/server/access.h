// Who may use the server: API keys and the browser origins allowed to read its answers (CORS).
//
// Keys (dsv4 serve --api-key / --api-key-file) are taken from "Authorization: Bearer KEY", as
// OpenAI clients send them, or from "x-api-key: KEY", as Anthropic's do. They are compared in
// time that depends on the configured key's length alone, so response times do not reveal how
// much of a guess was right.
//
// Origins (--allowed-origins): a browser page from another origin may call the server only if
// its Origin is listed ("*": any). Its preflight (OPTIONS) is answered with the methods and the
// headers it asked for; an origin not listed gets 403 to the preflight and no CORS headers
// otherwise, so the browser keeps the answer from the page.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {

// Header names and values that HTTP compares without case (ASCII letters only).
std::string ascii_lower(std::string_view s);

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(std::vector<std::string> keys);  // Error on an empty key or one with spaces
  // --api-key-file: one key per line; blank lines and lines starting with '#' are skipped.
  static std::vector<std::string> from_file(const std::string& path);

  bool required() const { return !keys_.empty(); }
  // The key a request carries: Authorization's bearer token, else x-api-key; "" when none.
  static std::string_view presented(std::string_view authorization, std::string_view x_api_key);
  bool accepts(std::string_view key) const;

 private:
  std::vector<std::string> keys_;
};

// Compares all of `expected` whatever `given` is; no early exit.
bool constant_time_equal(std::string_view given, std::string_view expected);

struct CorsPolicy {
  std::vector<std::string> origins;  // empty: no cross-origin access
  bool allows(std::string_view origin) const;
  // The Access-Control-Request-Headers a preflight asked for, if they are header names only;
  // "" otherwise (the answer then lists none and the browser refuses).
  static std::string echoed_headers(std::string_view requested);
};

}  // namespace dsv4
