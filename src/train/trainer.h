// dsv4 train: the training loop around train_batch. A run is described by one JSON file,
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
#include "train/train_data.h"
#include "train/train_settings.h"
#include "train/train_weights.h"

namespace dsv4 {

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
  // Asked after every step: true saves the run there and ends it (`dsv4 train` on SIGINT or
  // SIGTERM), to be resumed later with the same bits.
  std::function<bool()> should_stop;
};

// Runs (or resumes) training; returns the log of every step of the run so far.
std::vector<StepLog> train(const TrainRun& run);

// Mean loss of the held-out sequences under weights w.
double eval_loss(const TrainWeights& w, const ModelConfig& c, const std::vector<TrainSequence>& seqs);

}  // namespace dsv4
