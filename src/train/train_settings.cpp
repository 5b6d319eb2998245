#include "train/train_settings.h"

#include <nlohmann/json.hpp>
#include <type_traits>

#include "core/check.h"
#include "core/json_input.h"

namespace dsv4 {

TrainSettings parse_train_settings(const std::string& json_text, const std::string& where) {
  nlohmann::json j;
  try {
    j = parse_json(json_text);
  } catch (const std::exception& e) {
    fail(where, ": not valid JSON: ", e.what());
  }
  DSV4_CHECK(j.is_object(), where, ": \"train\" must be an object");
  TrainSettings s;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    auto integer = [&](auto& dst, long long lo) {
      DSV4_CHECK(v.is_number_integer() && v.get<long long>() >= lo, where, ": train.", k, " must be an integer >= ",
                 lo, ", got ", v.dump());
      dst = static_cast<std::remove_reference_t<decltype(dst)>>(v.get<long long>());
    };
    auto number = [&](float& dst, double lo, double hi) {
      DSV4_CHECK(v.is_number() && v.get<double>() >= lo && v.get<double>() <= hi, where, ": train.", k,
                 " must be a number in [", lo, ", ", hi, "], got ", v.dump());
      dst = v.get<float>();
    };
    if (k == "steps") integer(s.steps, 1);
    else if (k == "batch") integer(s.batch, 1);
    else if (k == "seq_len") integer(s.seq_len, 2);
    else if (k == "warmup") integer(s.warmup, 0);
    else if (k == "seed") integer(s.seed, 0);
    else if (k == "eval_every") integer(s.eval_every, 1);
    else if (k == "save_every") integer(s.save_every, 1);
    else if (k == "eval_sequences") integer(s.eval_sequences, 1);
    else if (k == "lr") number(s.lr, 0, 1);
    else if (k == "final_lr_fraction") number(s.final_lr_fraction, 0, 1);
    else if (k == "weight_decay") number(s.weight_decay, 0, 1);
    else if (k == "grad_clip") number(s.grad_clip, 0, 1e9);
    else if (k == "mtp_weight") number(s.mtp_weight, 0, 10);
    else if (k == "bias_update_rate") number(s.bias_update_rate, 0, 1);
    else if (k == "optimizer") {
      DSV4_CHECK(v.is_string() && (v == "muon" || v == "adamw"), where, ": train.optimizer must be \"muon\" or "
                 "\"adamw\", got ", v.dump());
      s.optimizer = v.get<std::string>();
    } else {
      fail(where, ": unknown key train.", k);
    }
  }
  return s;
}

}  // namespace dsv4
