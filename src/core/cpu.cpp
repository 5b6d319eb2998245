// The once-per-process choice of the SIMD path (see cpu.h).
#include "core/cpu.h"

#include <cstdlib>
#include <cstring>

namespace dsv4 {

namespace {

bool detect() {
  const char* off = std::getenv("DSV4_NO_AVX2");
  if (off && std::strcmp(off, "") != 0 && std::strcmp(off, "0") != 0) return false;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512f() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

}  // namespace

bool use_avx512() {
  // AVX-512F itself; kernels needing more (BW, VL, BF16, ...) check those on top.
  static const bool on = use_avx2_fma() && !env_off("DSV4_NO_AVX512") && cpu_has_avx512f();
  return on;
}

bool use_avx2_fma() {
  static const bool avx2 = detect();  // thread-safe initialisation, once
  return avx2;
}

}  // namespace dsv4
