// The run around the steps (train/train_step.h): settings, data, initialization or resume,
// then per step the log, evaluation and saving (checkpoint, training state, loss log and
// curve). Saves are written to temporary files and renamed, so an interrupted save leaves the
// previous one.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "core/json_input.h"
#include "core/read_file.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "train/plot.h"
#include "train/schedule.h"
#include "train/train_cost.h"
#include "train/train_model.h"
#include "train/train_state.h"
#include "train/train_step.h"

namespace dsv4 {

namespace fs = std::filesystem;

double eval_loss(const TrainWeights& w, const ModelConfig& c, const std::vector<TrainSequence>& seqs) {
  const TrainRopes ropes(c);
  double nll = 0;
  long long counted = 0;
  SequenceOptions o;
  o.mtp_weight = 0;
  for (const TrainSequence& s : seqs) {
    const SequenceLoss l = train_sequence(w, c, ropes, s.inputs, s.targets, o, nullptr);
    nll += l.main * l.main_targets, counted += l.main_targets;
  }
  return nll / static_cast<double>(std::max(1LL, counted));
}

namespace {

nlohmann::json log_json(const StepLog& l) {
  return {l.step, l.lr, l.loss, l.mtp_loss, l.index_loss, l.grad_norm, l.tokens_per_s, l.eval_loss};
}

StepLog log_from(const nlohmann::json& j) {
  StepLog l;
  l.step = j[0], l.lr = j[1], l.loss = j[2], l.mtp_loss = j[3], l.index_loss = j[4], l.grad_norm = j[5];
  l.tokens_per_s = j[6], l.eval_loss = j[7];
  return l;
}

class Trainer {
 public:
  Trainer(const TrainRun& run) : run_(run) {
    const std::string cfg_text = read_file(run.config_path);
    nlohmann::json j;
    try {
      j = parse_json(cfg_text);
    } catch (const std::exception& e) {
      fail(run.config_path, ": not valid JSON: ", e.what());
    }
    DSV4_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(), run.config_path,
               ": expected {\"model\": <config.json object>, \"train\": {...}}");
    model_json_ = j["model"].dump(2);
    c_ = parse_config(model_json_, run.config_path + " (model)");
    settings_ = parse_train_settings(j.contains("train") ? j["train"].dump() : "{}", run.config_path);
    if (run.steps_override > 0) settings_.steps = run.steps_override;
    if (!run.optimizer_override.empty()) {
      DSV4_CHECK(run.optimizer_override == "muon" || run.optimizer_override == "adamw",
                 "--optimizer must be muon or adamw, got ", run.optimizer_override);
      settings_.optimizer = run.optimizer_override;
    }
    tokenizer_text_ = read_file(run.tokenizer_path);
    const Tokenizer tok = Tokenizer::from_json(tokenizer_text_, run.tokenizer_path);
    DSV4_CHECK(tok.vocab_size() <= c_.vocab_size, run.tokenizer_path, " has ", tok.vocab_size(),
               " tokens, more than the model's vocab_size ", c_.vocab_size);
    DSV4_CHECK(!run.data.empty(), "no --data given");
    for (const std::string& d : run.data) {
      sources_.push_back(load_train_source(d, tok, c_.bos_token_id));
      const TrainSource& s = sources_.back();
      DSV4_CHECK(s.stream.empty() || s.stream.size() >= size_t(settings_.seq_len) + 1, s.path, ": ",
                 s.stream.size(), " tokens, fewer than one sequence of seq_len ", settings_.seq_len, " + 1");
    }
    if (!run.eval_path.empty())
      eval_ = eval_sequences(load_train_source(run.eval_path, tok, c_.bos_token_id), settings_.seq_len,
                             settings_.eval_sequences);

    w_ = init_weights(c_, settings_.seed);
    if (!run.init_dir.empty()) load_init(run.init_dir);
    stepper_ = std::make_unique<TrainStep>(c_, w_, settings_);
    flops_per_token_ = training_flops_per_token(c_, settings_.mtp_weight > 0 && !w_.mtp.empty());
    fs::create_directories(run.out_dir);
    if (run.resume) load_state(state_path());
  }

  std::vector<StepLog> run() {
    const long long end = run_.stop_at >= 0 ? std::min(settings_.steps, run_.stop_at) : settings_.steps;
    if (step_ >= settings_.steps) message("already trained for " + std::to_string(settings_.steps) + " steps");
    while (step_ < end) {
      const auto t0 = std::chrono::steady_clock::now();
      StepLog log = train_step();
      DSV4_CHECK(std::isfinite(log.loss) && std::isfinite(log.grad_norm), "training diverged at step ", step_ + 1,
                 " (loss ", log.loss, ", gradient norm ", log.grad_norm, "); the last save is step ",
                 step_ / settings_.save_every * settings_.save_every, ": lower train.lr and resume or restart");
      log.tokens_per_s = double(settings_.batch) * settings_.seq_len /
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      log.gflops = gflops_at(log.tokens_per_s);
      ++step_;
      if (!eval_.empty() && (step_ % settings_.eval_every == 0 || step_ == settings_.steps))
        log.eval_loss = eval_loss(w_, c_, eval_);
      history_.push_back(log);
      if (run_.on_step) run_.on_step(log, settings_.steps);
      const bool stop = step_ < end && run_.should_stop && run_.should_stop();
      if (step_ % settings_.save_every == 0 || step_ == end || stop) save();
      if (stop) {
        message("stopped after step " + std::to_string(step_) + " and saved; --resume goes on from there");
        break;
      }
    }
    return history_;
  }

 private:
  std::string state_path() const { return (fs::path(run_.out_dir) / "train_state.safetensors").string(); }
  // The achieved GFLOP/s of a step that ran at tokens_per_s (train/train_cost.h's count).
  double gflops_at(double tokens_per_s) const { return tokens_per_s * flops_per_token_ / 1e9; }

  void message(const std::string& m) const {
    if (run_.on_message) run_.on_message(m);
  }

  StepLog train_step() {
    StepLog log;
    log.step = step_ + 1;
    log.lr = lr_at(step_, settings_.warmup, settings_.steps, settings_.lr, settings_.final_lr_fraction);
    const StepLosses l = stepper_->run(sources_, step_, static_cast<float>(log.lr));
    log.loss = l.loss, log.mtp_loss = l.mtp_loss, log.index_loss = l.index_loss, log.grad_norm = l.grad_norm;
    return log;
  }

  void load_init(const std::string& dir) {
    std::string from;
    w_ = read_model_weights(dir, c_, &from);
    message("initialized from " + from);
  }

  void load_state(const std::string& path) {
    DSV4_CHECK(fs::exists(path), "--resume: ", path, " does not exist (nothing to resume)");
    const SafetensorsFile f(path);
    const auto& meta = f.metadata();
    for (const char* k : {"step", "model", "train", "history"})
      DSV4_CHECK(meta.count(k), path, ": no '", k, "' in its metadata (not a dsv4 training state)");
    DSV4_CHECK(nlohmann::json::parse(meta.at("model")) == nlohmann::json::parse(model_json_), path,
               ": saved for a different model config than ", run_.config_path);
    const nlohmann::json saved = nlohmann::json::parse(meta.at("train"));
    DSV4_CHECK(saved == resume_key(), path, ": saved by a run with other settings (", saved.dump(), ") than this one (",
               resume_key().dump(), "); a resumed run must keep them to continue exactly");
    read_float_state(f, w_);
    step_ = std::stoll(meta.at("step"));
    for (Param& p : stepper_->params().params()) {
      if (p.muon) {
        if (f.has("muon/" + p.name)) p.muon_state.momentum = values_of<float>(f.get("muon/" + p.name));
      } else if (f.has("adam_m/" + p.name)) {
        p.adam.m = values_of<float>(f.get("adam_m/" + p.name));
        p.adam.v = values_of<float>(f.get("adam_v/" + p.name));
        p.adam.step = step_;
      }
    }
    for (const auto& l : nlohmann::json::parse(meta.at("history"))) {
      history_.push_back(log_from(l));
      history_.back().gflops = gflops_at(history_.back().tokens_per_s);
    }
    message("resumed at step " + std::to_string(step_) + " from " + path);
  }

  // What a resumed run must share with the saved one to continue bit for bit (the step count
  // may grow; the thread count fixes the order of the parallel sums).
  nlohmann::json resume_key() const {
    return {{"batch", settings_.batch}, {"seq_len", settings_.seq_len}, {"optimizer", settings_.optimizer},
            {"seed", settings_.seed}, {"lr", settings_.lr}, {"warmup", settings_.warmup},
            {"threads", pool().size()}};
  }

  void save() {
    // Float masters and routing, optimizer moments, step, settings, history; the released
    // checkpoint beside them.
    std::vector<TensorData> t;
    for (const Param& p : stepper_->params().params()) {
      if (!p.muon_state.momentum.empty())
        t.push_back({"muon/" + p.name, DType::F32, p.shape, bytes_of(p.muon_state.momentum)});
      if (!p.adam.m.empty()) {
        t.push_back({"adam_m/" + p.name, DType::F32, p.shape, bytes_of(p.adam.m)});
        t.push_back({"adam_v/" + p.name, DType::F32, p.shape, bytes_of(p.adam.v)});
      }
    }
    nlohmann::json hist = nlohmann::json::array();
    for (const StepLog& l : history_) hist.push_back(log_json(l));
    const nlohmann::json train_json = resume_key();
    write_model_dir(run_.out_dir, c_, model_json_, tokenizer_text_, w_, std::move(t),
                    {{"step", std::to_string(step_)}, {"model", model_json_}, {"train", train_json.dump()},
                     {"history", hist.dump()}});
    const fs::path out(run_.out_dir);
    // The loss log and curve.
    std::ostringstream log;
    log << "step\tlr\tloss\tmtp_loss\tindex_loss\tgrad_norm\ttokens_per_s\teval_loss\tgflops\n";
    PlotSeries train{"training loss", {}, {}, 0x1f77b4}, held{"held-out loss", {}, {}, 0xd62728};
    for (const StepLog& l : history_) {
      log << l.step << "\t" << l.lr << "\t" << l.loss << "\t" << l.mtp_loss << "\t" << l.index_loss << "\t"
          << l.grad_norm << "\t" << l.tokens_per_s << "\t" << l.eval_loss << "\t" << l.gflops << "\n";
      train.x.push_back(double(l.step)), train.y.push_back(l.loss);
      if (l.eval_loss >= 0) held.x.push_back(double(l.step)), held.y.push_back(l.eval_loss);
    }
    write_text_file((out / "train_log.tsv").string(), log.str());
    std::vector<PlotSeries> series = {train};
    if (!held.x.empty()) series.push_back(held);
    if (train.x.size() >= 2)
      write_atomically((out / "loss.png").string(), [&](const std::string& p) {
        write_line_plot_png(p, series, {"dsv4 train: " + settings_.optimizer, "step", "cross-entropy (nats)", 900, 540, false});
      });
  }

  TrainRun run_;
  std::string model_json_, tokenizer_text_;
  ModelConfig c_;
  TrainSettings settings_;
  std::vector<TrainSource> sources_;
  std::vector<TrainSequence> eval_;
  TrainWeights w_;
  std::unique_ptr<TrainStep> stepper_;  // holds the gradients and the optimizer state
  long long step_ = 0;
  std::vector<StepLog> history_;
  double flops_per_token_ = 0;
};

}  // namespace

std::vector<StepLog> train(const TrainRun& run) {
  Trainer t(run);
  return t.run();
}

}  // namespace dsv4
