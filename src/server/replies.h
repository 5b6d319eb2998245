// What every route answers with: JSON bodies, errors in the shape of the route's API, usage
// and finish reasons in OpenAI's terms, and SSE providers that never throw.
#pragma once

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "runtime/scheduler.h"
#include "server/api_request.h"

namespace dsv4 {

long long now_s();  // Unix time, for "created"
void send_json(httplib::Response& res, int status, const nlohmann::ordered_json& body);
// Errors in the shape of the API the path belongs to: Anthropic's for /v1/messages, OpenAI's
// for everything else.
void send_error(const httplib::Request& req, httplib::Response& res, const ApiError& e);
nlohmann::ordered_json usage_json(const GenerateResult& r);  // OpenAI's usage
// ... of samples of one prompt: the prompt once, the completions summed.
nlohmann::ordered_json usage_json(std::span<const GenerateResult> samples);
const char* finish_name(const GenerateResult& r, bool tool_calls);  // OpenAI's finish_reason
// A streaming provider must never throw (it runs on an HTTP worker thread): any exception
// cancels the job (each of the jobs, for samples) and ends the response.
httplib::ContentProviderWithoutLength safe_provider(std::shared_ptr<Job> job,
                                                    httplib::ContentProviderWithoutLength provider);
httplib::ContentProviderWithoutLength safe_provider(std::vector<std::shared_ptr<Job>> jobs,
                                                    httplib::ContentProviderWithoutLength provider);
// A streamed job's next event; nullopt once the client has gone (the job is then cancelled).
std::optional<JobEvent> next_event(Job& job, httplib::DataSink& sink);

}  // namespace dsv4
