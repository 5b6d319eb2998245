// The responses kept for previous_response_id and GET / DELETE /v1/responses/{id}: in memory
// only (a restart forgets them), the least recently used dropped first beyond a count or a
// byte budget. Each entry is a Response object and its whole conversation as items: the
// conversation it continued, its input, its output (never its instructions, which OpenAI
// does not carry over either). Thread-safe; entries are shared, never copied under the lock.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

namespace dsv4 {

struct StoredResponse {
  nlohmann::ordered_json response, conversation;
};

class ResponseStore {
 public:
  ResponseStore(size_t max_entries, size_t max_bytes) : max_entries_(max_entries), max_bytes_(max_bytes) {}
  // An entry over the whole budget is not kept (false).
  bool put(const std::string& id, std::shared_ptr<const StoredResponse> entry);
  std::shared_ptr<const StoredResponse> get(const std::string& id);  // null if unknown; marks it used
  bool erase(const std::string& id);
  size_t size() const;

 private:
  struct Slot {
    std::shared_ptr<const StoredResponse> entry;
    size_t bytes;
    std::list<std::string>::iterator used;
  };
  void drop(std::unordered_map<std::string, Slot>::iterator it);
  size_t max_entries_, max_bytes_;
  mutable std::mutex mu_;
  std::list<std::string> lru_;  // most recently used first
  std::unordered_map<std::string, Slot> slots_;
  size_t bytes_ = 0;
};

}  // namespace dsv4
