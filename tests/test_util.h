// Shared helpers for the tests: paths to ../shared, float tensors from safetensors files,
// error metrics that report the worst element, temporary directories and running the CLI.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "runtime/scheduler.h"

namespace dsv4::test {

std::string shared_dir();                // ../shared (DSV4_SHARED_DIR)
std::string golden_dir(const std::string& name);
std::string dsv4_binary();

// A rerun that needs only every path once, not the main run's lengths: under a sanitizer
// (.ci/sanitizers sets DSV4_SANITIZER) or on the AVX2 or scalar kernels (ctest's _avx2 and
// _scalar runs set DSV4_NO_AVX512 or DSV4_NO_AVX2).
bool short_rerun();
bool other_kernel_path();

std::vector<float> floats(const SafetensorsFile& f, const std::string& name);
std::vector<int> ints(const SafetensorsFile& f, const std::string& name);     // I32
std::vector<uint8_t> bytes(const SafetensorsFile& f, const std::string& name);  // U8

struct MaxErr {
  double err = 0;
  size_t index = 0;
  float got = 0, want = 0;
  std::string str() const;
};
MaxErr max_abs_err(std::span<const float> got, std::span<const float> want);

// A fresh directory under /tmp, removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int status = -1;  // exit code
  std::string output;  // stdout + stderr
};
RunResult run_command(const std::string& cmd);

// A scheduler job's result, waiting up to 120 s for each event; Error for an error event.
GenerateResult result_of(Job& job);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);

}  // namespace dsv4::test
