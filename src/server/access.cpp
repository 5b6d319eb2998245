// API keys and CORS origins (access.h).
#include "server/access.h"

#include <algorithm>
#include <cctype>

#include "core/check.h"
#include "core/read_file.h"

namespace dsv4 {

namespace {

std::string trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}


}  // namespace

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool constant_time_equal(std::string_view given, std::string_view expected) {
  unsigned diff = given.size() == expected.size() ? 0u : 1u;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(expected[i]);
  }
  return diff == 0;
}

ApiKeys::ApiKeys(std::vector<std::string> keys) : keys_(std::move(keys)) {
  for (const std::string& k : keys_) {
    DSV4_CHECK(!k.empty(), "an API key must not be empty");
    DSV4_CHECK(std::none_of(k.begin(), k.end(), [](unsigned char c) { return c <= ' ' || c == 127; }),
               "an API key must not contain spaces or control characters");
  }
}

std::vector<std::string> ApiKeys::from_file(const std::string& path) {
  std::vector<std::string> keys;
  const std::string text = dsv4::read_file(path);
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    const std::string line = trimmed(std::string_view(text).substr(begin, end - begin));
    if (!line.empty() && line[0] != '#') keys.push_back(line);
    begin = end + 1;
  }
  DSV4_CHECK(!keys.empty(), "--api-key-file ", path, ": no key in it (one per line)");
  return keys;
}

std::string_view ApiKeys::presented(std::string_view authorization, std::string_view x_api_key) {
  if (authorization.size() > 7 && ascii_lower(authorization.substr(0, 7)) == "bearer ") {
    std::string_view k = authorization.substr(7);
    while (!k.empty() && k.front() == ' ') k.remove_prefix(1);
    return k;
  }
  return x_api_key;
}

bool ApiKeys::accepts(std::string_view key) const {
  bool ok = false;
  for (const std::string& k : keys_) ok |= constant_time_equal(key, k);  // every key compared
  return ok;
}

bool CorsPolicy::allows(std::string_view origin) const {
  if (origin.empty()) return false;
  const std::string o = ascii_lower(origin);
  return std::any_of(origins.begin(), origins.end(), [&](const std::string& a) { return a == "*" || ascii_lower(a) == o; });
}

std::string CorsPolicy::echoed_headers(std::string_view requested) {
  if (requested.size() > 2048) return "";
  for (unsigned char c : requested)
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == ',' || c == ' ')) return "";
  return std::string(requested);
}

}  // namespace dsv4
