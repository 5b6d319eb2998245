// Which instruction set the SIMD kernels use. Decided once per process, at the first call, from
// the CPU: AVX2 + FMA when both are present, the scalar reference otherwise. A process never
// mixes the two, so every result of one process comes from one set of kernels (the kernels'
// reduction orders differ between the paths, within the tolerance their tests state).
// DSV4_NO_AVX2=1 in the environment forces the scalar path: only to validate it end to end
// (ctest runs the goldens both ways), never a different semantics.
#pragma once

// What the AVX2 + FMA kernels are compiled for: the project builds for generic x86-64 and
// picks these at run time (use_avx2_fma), so each such function carries the target itself.
#define DSV4_AVX2 __attribute__((target("avx2,fma")))

namespace dsv4 {

bool use_avx2_fma();

// AVX-512 kernels on top of AVX2, where the CPU has AVX-512F (kernels needing more of AVX-512
// check that on top): off with DSV4_NO_AVX2 too, or with DSV4_NO_AVX512=1 alone (validates the
// AVX2 path end to end on such a CPU).
bool use_avx512();

}  // namespace dsv4
