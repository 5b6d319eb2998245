#include "test_util.h"

#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace dsv4::test {

std::string shared_dir() { return DSV4_SHARED_DIR; }
std::string golden_dir(const std::string& name) { return shared_dir() + "/golden/" + name; }
std::string dsv4_binary() { return DSV4_BINARY; }

bool other_kernel_path() { return std::getenv("DSV4_NO_AVX2") || std::getenv("DSV4_NO_AVX512"); }
bool short_rerun() { return std::getenv("DSV4_SANITIZER") || other_kernel_path(); }

std::vector<float> floats(const SafetensorsFile& f, const std::string& name) { return to_f32(f.get(name)); }

std::vector<int> ints(const SafetensorsFile& f, const std::string& name) {
  const TensorView& t = f.get(name);
  if (t.dtype != DType::I32) throw std::runtime_error(name + " is not I32");
  std::vector<int> v(t.numel());
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

std::vector<uint8_t> bytes(const SafetensorsFile& f, const std::string& name) {
  const TensorView& t = f.get(name);
  return std::vector<uint8_t>(t.data, t.data + t.nbytes);
}

std::string MaxErr::str() const {
  std::ostringstream o;
  o << "max abs err " << err << " at [" << index << "]: got " << got << ", want " << want;
  return o.str();
}

MaxErr max_abs_err(std::span<const float> got, std::span<const float> want) {
  MaxErr m;
  if (got.size() != want.size()) {
    m.err = INFINITY;
    return m;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (e > m.err || std::isnan(e)) {
      m.err = std::isnan(e) ? INFINITY : e;
      m.index = i;
      m.got = got[i];
      m.want = want[i];
    }
  }
  return m;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "dsv4-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

RunResult run_command(const std::string& cmd) {
  RunResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

GenerateResult result_of(Job& job) {
  for (;;) {
    const auto e = job.next(std::chrono::seconds(120));
    if (!e) throw Error("no event in 120 s");
    if (e->kind == JobEvent::error) throw Error(e->text);
    if (e->kind == JobEvent::done) return e->result;
  }
}

}  // namespace dsv4::test
