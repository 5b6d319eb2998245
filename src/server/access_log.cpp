// The access log (access_log.h).
#include "server/access_log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

namespace dsv4::access_log {

namespace {

using Clock = std::chrono::steady_clock;

thread_local RequestRecord record;
thread_local std::optional<Clock::time_point> started;

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void begin() {
  record = {};
  started = Clock::now();
}

RequestRecord& current() { return record; }

double seconds() { return started ? std::chrono::duration<double>(Clock::now() - *started).count() : 0.0; }

void reset() {
  record = {};
  started.reset();
}

void write(const std::string& remote, const std::string& method, const std::string& path, int status,
           bool log_prompts) {
  const double ms = 1000 * seconds();
  char head[96];
  std::snprintf(head, sizeof head, " %d %.1f ms", status, ms);
  // The path is the client's: as a JSON string it cannot forge a line or a field.
  const auto quoted = [](const std::string& s) {
    return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string line = "dsv4 serve: " + utc_now() + " " + remote + " " + method + " " + quoted(path) + head;
  if (record.prompt_tokens >= 0)
    line += " prompt " + std::to_string(record.prompt_tokens) + " cached " + std::to_string(record.cached_tokens) +
            " completion " + std::to_string(record.completion_tokens);
  if (log_prompts && !record.prompt_text.empty()) line += " text " + quoted(record.prompt_text);
  line += '\n';
  static std::mutex mu;
  {
    std::lock_guard lock(mu);
    std::cerr << line << std::flush;
  }
  reset();
}

}  // namespace dsv4::access_log
