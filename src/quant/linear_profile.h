// Where a forward pass's matrix-product time goes, by kind of product: what `dsv4 bench
// --profile` prints beside its decode table. While recording is on, linear() times each call and
// adds it to a row keyed by the weight format, whether the inputs are quantized (FP8 / FP4
// weights on e4m3 inputs) or float (wo_a, BF16 weights), the number of tokens (1, 2-3, 4-8, 9-16,
// more) and whether the call ran inline on one thread inside a parallel region (the routed
// experts of a decode step, one expert per thread) or spread over all threads. Off, a call costs
// one relaxed atomic load.
#pragma once

#include <string>
#include <vector>

#include "quant/linear.h"

namespace dsv4 {

struct LinearProfileRow {
  std::string format;  // "fp8", "fp4", "bf16", "f32"
  bool float_inputs = false;
  std::string tokens;  // "1", "2-3", "4-8", "9-16", "17+"
  bool inline_on_thread = false;
  long long calls = 0;
  double seconds = 0;  // the calls' durations added (inline ones: thread time, over all threads)
  double weight_bytes = 0;  // each call's weight rows (scales left out), once per call
};

void linear_profile_start();  // clears the rows and starts recording
std::vector<LinearProfileRow> linear_profile_stop();  // stops; the rows that saw a call
bool linear_profile_on();
void linear_profile_record(const Linear& w, bool quantize_input, int n, int rows, double seconds);

}  // namespace dsv4
