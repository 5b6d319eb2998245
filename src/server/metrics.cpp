// Prometheus text for GET /metrics (metrics.h).
#include "server/metrics.h"

#include <cstdio>

namespace dsv4 {

namespace {

struct Writer {
  std::string out;

  void head(const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, double v, const std::string& labels = "") {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + buf + "\n";
  }
  void single(const char* name, const char* type, const char* help, double v) {
    head(name, type, help);
    sample(name, v);
  }
  void histogram(const char* name, const char* help, const Histogram& h) {
    head(name, "histogram", help);
    unsigned long long cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      char le[32];
      std::snprintf(le, sizeof le, "%g", h.bounds[i]);
      sample(std::string(name) + "_bucket", static_cast<double>(cumulative), std::string("le=\"") + le + "\"");
    }
    sample(std::string(name) + "_bucket", static_cast<double>(h.count), "le=\"+Inf\"");
    sample(std::string(name) + "_sum", h.sum);
    sample(std::string(name) + "_count", static_cast<double>(h.count));
  }
};

}  // namespace

void ServerMetrics::answering(const std::string& route, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

void ServerMetrics::answered(double seconds) {
  std::lock_guard lock(mu_);
  request_seconds_.observe(seconds);
}

void ServerMetrics::generated(int prompt_tokens, int cached_tokens, int completion_tokens) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += prompt_tokens;
  cached_tokens_ += cached_tokens;
  completion_tokens_ += completion_tokens;
}

std::string ServerMetrics::render(const SchedulerStats& s, const PrefixCacheStats* cache) const {
  Writer w;
  {
    std::lock_guard lock(mu_);
    w.head("dsv4_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (const auto& [key, n] : requests_)
      w.sample("dsv4_requests_total", static_cast<double>(n),
               "route=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"");
    w.histogram("dsv4_request_duration_seconds", "Time from a request read to its answer sent (a stream: ended).",
                request_seconds_);
    w.single("dsv4_prompt_tokens_total", "counter", "Prompt tokens of the generations.", prompt_tokens_);
    w.single("dsv4_prompt_tokens_cached_total", "counter", "Of those, tokens found in the prefix cache.", cached_tokens_);
    w.single("dsv4_generation_tokens_total", "counter", "Tokens generated (the end-of-sentence token included).",
             completion_tokens_);
  }
  w.single("dsv4_requests_running", "gauge", "Generations in a slot.", s.active);
  w.single("dsv4_requests_waiting", "gauge", "Generations queued for a slot.", s.queued);
  w.single("dsv4_generations_completed_total", "counter", "Generations that ended normally.", s.completed);
  w.single("dsv4_generations_cancelled_total", "counter", "Generations cancelled (client gone, shutdown).", s.cancelled);
  w.single("dsv4_generations_refused_total", "counter", "Requests refused with 503 (queue full).", s.refused);
  w.single("dsv4_steps_total", "counter", "Forward passes of the scheduler.", s.steps);
  w.single("dsv4_step_tokens_total", "counter", "Tokens fed by those passes.", s.step_tokens);
  w.histogram("dsv4_step_duration_seconds", "Wall time of each forward pass (all its sessions).", s.step_seconds);
  w.single("dsv4_spec_verify_steps_total", "counter", "Speculative verify passes (finished generations).",
           static_cast<double>(s.spec.steps));
  w.single("dsv4_spec_draft_tokens_total", "counter", "Draft tokens checked.", static_cast<double>(s.spec.drafted));
  w.single("dsv4_spec_accepted_tokens_total", "counter", "Draft tokens kept.", static_cast<double>(s.spec.accepted));
  if (cache) {
    w.single("dsv4_prefix_cache_hits_total", "counter", "Prompts that found a cached prefix.", cache->hits);
    w.single("dsv4_prefix_cache_disk_hits_total", "counter", "Of them, read from the disk tier.", cache->disk_hits);
    w.single("dsv4_prefix_cache_misses_total", "counter", "Prompts that found none.", cache->misses);
    w.single("dsv4_prefix_cache_tokens_reused_total", "counter", "Prompt tokens not prefilled thanks to it.",
             cache->tokens_reused);
    w.head("dsv4_prefix_cache_bytes", "gauge", "Bytes held, by tier.");
    w.sample("dsv4_prefix_cache_bytes", static_cast<double>(cache->bytes), "tier=\"ram\"");
    w.sample("dsv4_prefix_cache_bytes", static_cast<double>(cache->disk_bytes), "tier=\"disk\"");
    w.head("dsv4_prefix_cache_entries", "gauge", "Snapshots held, by tier.");
    w.sample("dsv4_prefix_cache_entries", static_cast<double>(cache->entries), "tier=\"ram\"");
    w.sample("dsv4_prefix_cache_entries", static_cast<double>(cache->disk_entries), "tier=\"disk\"");
  }
  return w.out;
}

}  // namespace dsv4
