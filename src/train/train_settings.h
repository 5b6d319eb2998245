// A training run's settings: the "train" object of `dsv4 train --config` (README lists the keys).
#pragma once

#include <cstdint>
#include <string>

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

}  // namespace dsv4
