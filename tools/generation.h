// What `dsv4 run` and `dsv4 chat` share: their options, loading the engine with a progress
// bar, and one assistant turn streamed to the terminal or a pipe, in the chosen layout of
// reasoning and answer (--reasoning-output).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/chat_prompt.h"
#include "runtime/engine.h"
#include "tools/options.h"

namespace dsv4::tools {

// Where the reasoning goes. inline: before the answer on stdout, dimmed on a colour terminal
// and otherwise between lines "<think>" and "</think>" (the model's own markers); separate:
// to stderr, so stdout carries the answer alone; hidden: nowhere.
enum class ReasoningOutput { inline_, separate, hidden };
ReasoningOutput parse_reasoning_output(const std::string& s);

struct RunArgs {
  std::string model_dir, prompt, input_file, system, reasoning = "none", reasoning_output = "inline";
  int max_tokens = 256, threads = 0, top_k = 0;
  float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
  uint64_t seed = 0;
  long long ctx = 65536;
  CacheArgs cache;
  WeightsIn weights = WeightsIn::automatic;
  std::string chat_format = "auto";
  std::string spec = "auto";  // speculative decoding: auto (the checkpoint's drafter), off, mtp, dspark
  int draft = -1;             // draft tokens per pass; -1: the drafter's default
};
void add_generation_options(CLI::App* sub, RunArgs& a);

std::unique_ptr<Engine> load_engine(const RunArgs& a);
// What the loaded model is, in one line: name, size, and where it came from when the
// checkpoint says (dsv4_origin in its metadata: trained by dsv4, or random weights) or has a
// model card.
std::string model_banner(const Engine& e);
// Warns when think max runs with less context than the model card advises.
void check_mode(ReasoningMode m, long long ctx);

struct Answer {
  nlohmann::ordered_json message;  // the assistant message as far as it got
  bool interrupted = false;        // stopped by Ctrl-C (see interrupt.h)
};
// One assistant turn: generates, streams reasoning / content / tool calls, reports the speed on
// stderr. A pending Ctrl-C (only while an Interrupts object lives) stops it at its next step.
Answer answer(Conversation& conv, const std::vector<int>& prompt, ReasoningMode mode, const RunArgs& a);

}  // namespace dsv4::tools
