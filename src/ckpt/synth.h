// Random-weight checkpoints in the official layout, written by dsv4 itself: config.json,
// model.safetensors (FP8 weights with 128x128 ue8m0 scales, FP4 or FP8 experts, BF16 / F32
// for the rest, exactly the dtypes of the release) and a byte-level tokenizer.json with the
// DeepSeek-V4 special tokens. Random weights produce noise: these models exist to exercise the
// engine end to end (and, with realistic shapes, to measure it), not to say anything.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/config.h"

namespace dsv4 {

struct SynthPreset {
  std::string name, description;
  std::string config_json;  // a complete config.json
};

const std::vector<SynthPreset>& synth_presets();
const SynthPreset& synth_preset(const std::string& name);  // throws Error listing the presets

// Writes DIR/config.json, DIR/model.safetensors, DIR/tokenizer.json. progress gets a fraction.
void write_synthetic_checkpoint(const std::string& dir, const SynthPreset& preset, uint64_t seed,
                                const std::function<void(double)>& progress = {});

}  // namespace dsv4
