// dsv4 train: the training loop around train_sequence. A run is described by one JSON file,
// {"model": <config.json>, "train": {...settings...}}; its output directory holds a checkpoint
// in the released format (config.json, model.safetensors, tokenizer.json) that every dsv4
// command loads, plus what resuming needs (train_state.safetensors: float masters, optimizer
// moments, routing biases, step and loss history) and the loss log and curve.
//
// Determinism: the sequences of step s are a function of (seed, s) alone, the optimizer state
// is saved bit for bit, and every parallel reduction has a fixed order, so a run stopped and
// resumed (same thread count) ends with the same bits as one that was not.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/config.h"
#include "tokenizer/tokenizer.h"
#include "train/train_weights.h"

namespace dsv4 {

struct TrainSettings {
  long long steps = 1000;
  int batch = 4;          // sequences per step
  int seq_len = 256;      // tokens per sequence
  std::string optimizer = "muon";  // "muon": Muon for hidden matrices + AdamW for the rest; "adamw": AdamW for all
  float lr = 3e-3f;       // peak learning rate (Muon updates are scaled to AdamW's RMS, so one rate serves both)
  long long warmup = 50;
  float final_lr_fraction = 0.1f;
  float weight_decay = 0.1f;  // matrices only
  float grad_clip = 1.0f;
  float mtp_weight = 0.3f;
  float bias_update_rate = 1e-3f;  // aux-loss-free balancing: bias += rate * sign(mean load - load)
  uint64_t seed = 1;
  int eval_every = 100, save_every = 200, eval_sequences = 16;
};

// Throws Error naming a bad or unknown key.
TrainSettings parse_train_settings(const std::string& json_text, const std::string& where);

// Training data: plain text (one token stream; sequences are random windows of it) or chat
// examples (JSON lines {"prompt", "completion"}: only completion tokens are counted as
// targets; examples are packed into sequences). Several sources mix by weight.
struct TrainSource {
  std::string path;
  double weight = 1;
  std::vector<int> stream;                 // text
  std::vector<std::vector<int>> examples;  // chat: prompt + completion ids
  std::vector<int> prompt_len;             // chat: tokens of each example's prompt
};
// path[:weight]; .jsonl files are chat examples. BOS (if >= 0) starts a text (a chat example's
// rendered prompt carries its own).
TrainSource load_train_source(const std::string& spec, const Tokenizer& tok, int bos);

// One training sequence: inputs [n] and targets [n] (-1: not counted).
struct TrainSequence {
  std::vector<int> inputs, targets;
};
// The b-th sequence of step s: a function of (seed, s, b) and the sources alone.
TrainSequence sample_sequence(const std::vector<TrainSource>& sources, int n, uint64_t seed, long long step, int b);
// Held-out sequences: consecutive non-overlapping windows from the start of a text source.
std::vector<TrainSequence> eval_sequences(const TrainSource& text, int n, int count);

struct StepLog {
  long long step = 0;
  double lr = 0, loss = 0, mtp_loss = 0, index_loss = 0, grad_norm = 0, tokens_per_s = 0;
  double eval_loss = -1;  // -1: not evaluated at this step
  double gflops = 0;      // achieved: tokens_per_s times training_flops_per_token (train/train_cost.h)
};

struct TrainRun {
  std::string config_path, out_dir, tokenizer_path, init_dir, eval_path;
  std::vector<std::string> data;  // path[:weight]
  bool resume = false;
  long long stop_at = -1;         // save and stop after this step (-1: run to the end)
  long long steps_override = -1;
  std::string optimizer_override;
  std::function<void(const StepLog&, long long total)> on_step;  // progress
  std::function<void(const std::string&)> on_message;
};

// Runs (or resumes) training; returns the log of every step of the run so far.
std::vector<StepLog> train(const TrainRun& run);

// Mean loss of the held-out sequences under weights w.
double eval_loss(const TrainWeights& w, const ModelConfig& c, const std::vector<TrainSequence>& seqs);

}  // namespace dsv4
