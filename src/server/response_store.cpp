// The LRU store of responses (response_store.h).
#include "server/response_store.h"

namespace dsv4 {

namespace {

// What an entry costs: its JSON text, a fair measure of what the trees hold.
size_t bytes_of(const StoredResponse& e) {
  using json = nlohmann::ordered_json;
  return e.response.dump(-1, ' ', false, json::error_handler_t::replace).size() +
         e.conversation.dump(-1, ' ', false, json::error_handler_t::replace).size();
}

}  // namespace

bool ResponseStore::put(const std::string& id, std::shared_ptr<const StoredResponse> entry) {
  const size_t bytes = bytes_of(*entry);  // outside the lock: it walks the whole conversation
  std::lock_guard lock(mu_);
  if (auto it = slots_.find(id); it != slots_.end()) drop(it);
  if (bytes > max_bytes_ || max_entries_ == 0) return false;
  while (!lru_.empty() && (slots_.size() >= max_entries_ || bytes_ + bytes > max_bytes_)) drop(slots_.find(lru_.back()));
  lru_.push_front(id);
  slots_.emplace(id, Slot{std::move(entry), bytes, lru_.begin()});
  bytes_ += bytes;
  return true;
}

std::shared_ptr<const StoredResponse> ResponseStore::get(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.used);
  return it->second.entry;
}

bool ResponseStore::erase(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return false;
  drop(it);
  return true;
}

size_t ResponseStore::size() const {
  std::lock_guard lock(mu_);
  return slots_.size();
}

void ResponseStore::drop(std::unordered_map<std::string, Slot>::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.used);
  slots_.erase(it);
}

}  // namespace dsv4
