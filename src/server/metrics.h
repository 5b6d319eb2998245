// GET /metrics: the server's counters in Prometheus' text format (version 0.0.4), for a
// Prometheus or Grafana Agent to scrape. Requests by route and status, their durations, the
// tokens of prompts (and how many came from the prefix cache) and of answers, the scheduler's
// queue and forward passes (with a histogram of their times), speculative decoding's drafts
// and acceptance, and the prefix cache's hits and sizes.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "core/histogram.h"
#include "runtime/prefix_cache.h"
#include "runtime/scheduler.h"

namespace dsv4 {

class ServerMetrics {
 public:
  // A request's answer is about to be sent: counted before its first byte leaves, so a client
  // that reads its answer and then scrapes /metrics finds it counted. The route is one the
  // server has (anything else counts as "other", so a client cannot grow the label set).
  void answering(const std::string& route, int status);
  // ... and has been sent (a stream: ended), taking this long.
  void answered(double seconds);
  void generated(int prompt_tokens, int cached_tokens, int completion_tokens);

  std::string render(const SchedulerStats& s, const PrefixCacheStats* cache) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, unsigned long long> requests_;
  Histogram request_seconds_{seconds_buckets()};
  unsigned long long prompt_tokens_ = 0, cached_tokens_ = 0, completion_tokens_ = 0;
};

}  // namespace dsv4
