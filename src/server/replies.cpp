// Shared pieces of the routes' answers (replies.h).
#include "server/replies.h"

#include <chrono>
#include <iostream>

#include "server/anthropic_api.h"

namespace dsv4 {

using json = nlohmann::ordered_json;

long long now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}


void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(const httplib::Request& req, httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, req.path.starts_with("/v1/messages") ? anthropic_error_body(e) : e.body());
}

json usage_json(const GenerateResult& r) { return usage_json(std::span<const GenerateResult>(&r, 1)); }

json usage_json(std::span<const GenerateResult> samples) {
  int completion = 0;
  for (const GenerateResult& r : samples) completion += static_cast<int>(r.tokens.size()) + (r.hit_eos ? 1 : 0);
  const GenerateResult& first = samples.front();
  return {{"prompt_tokens", first.prompt_tokens}, {"completion_tokens", completion},
          {"total_tokens", first.prompt_tokens + completion},
          {"prompt_tokens_details", {{"cached_tokens", first.reused_tokens}}}};
}

const char* finish_name(const GenerateResult& r, bool tool_calls) {
  if (tool_calls && r.finish == FinishReason::stop) return "tool_calls";
  return r.finish == FinishReason::length ? "length" : "stop";
}

httplib::ContentProviderWithoutLength safe_provider(std::vector<std::shared_ptr<Job>> jobs,
                                                    httplib::ContentProviderWithoutLength provider) {
  return [jobs, provider](size_t offset, httplib::DataSink& sink) {
    try {
      return provider(offset, sink);
    } catch (const std::exception& e) {
      std::cerr << (std::string("dsv4 serve: stream aborted: ") + e.what() + "\n") << std::flush;
      for (const auto& job : jobs) job->cancel();
      return false;
    }
  };
}

httplib::ContentProviderWithoutLength safe_provider(std::shared_ptr<Job> job,
                                                    httplib::ContentProviderWithoutLength provider) {
  return safe_provider(std::vector<std::shared_ptr<Job>>{std::move(job)}, std::move(provider));
}

std::optional<JobEvent> next_event(Job& job, httplib::DataSink& sink) {
  while (true) {
    if (auto ev = job.next(std::chrono::milliseconds(200))) return ev;
    if (!sink.is_writable()) {
      job.cancel();
      return std::nullopt;
    }
  }
}

}  // namespace dsv4
