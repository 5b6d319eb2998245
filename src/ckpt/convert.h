// Model-parallel conversion: the official convert.py's result from a Hugging Face checkpoint.
// For each rank r of N, model{r}-mp{N}.safetensors holds that rank's part of every tensor (see
// Layout in io/checkpoint.h for what is split and how), wo_a dequantized to BF16, and, with
// expert_fp8, the FP4 routed experts cast to FP8 with 128x128 block scales (convert.py's
// cast_e2m1fn_to_e4m3fn). config.json (expert_dtype updated), tokenizer.json and
// tokenizer_config.json are copied. Every written file is read back and checked against the
// expected tensor list of its rank before the conversion reports success.
#pragma once

#include <functional>
#include <string>

namespace dsv4 {

struct ConvertOptions {
  std::string hf_dir, out_dir;
  int model_parallel = 1;
  bool expert_fp8 = false;  // --expert-dtype fp8
};

// progress(fraction of the output bytes written). Throws Error naming what is wrong (input not
// in the Hugging Face layout, a dimension model_parallel does not divide, an output file that
// does not read back as expected).
void convert_checkpoint(const ConvertOptions& o, const std::function<void(double)>& progress = {});

// convert.py's lossless FP4 -> FP8 cast of one expert matrix: e2m1 weight [out, in / 2] bytes
// with ue8m0 scales [out, in / 32] -> e4m3 [out, in] and ue8m0 block scales
// [out / 128, in / 128]. out and in must be multiples of 128.
void cast_fp4_to_fp8(const uint8_t* weight, const uint8_t* scale, int out, int in, uint8_t* weight8,
                     uint8_t* scale8);

}  // namespace dsv4
