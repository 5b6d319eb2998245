// The model's activation rounding points, as the original tilelang kernels compute them.
//
// FP8 (e4m3) blocks: s = 2^ceil(log2(max(amax, 1e-4) / 448)), q = e4m3(clamp(x / s, +-448)).
// FP4 (e2m1) blocks: s = 2^ceil(log2(max(amax, 6 * 2^-126) / 6)), q = e2m1(clamp(x / s, +-6)).
// "Round trip" replaces x by q * s in place (the kv cache, compressed kv, indexer q / k).
#pragma once

#include <span>

namespace dsv4 {

// Splits x [n] into blocks of `block`; writes the unscaled e4m3 values to q [n] and one scale
// per block to scale [n / block]. q and x may alias. Every linear input goes through it: AVX2
// where the CPU has it (bitwise the same as the scalar reference, which tests call directly).
void fp8_quantize(std::span<const float> x, int block, std::span<float> q, std::span<float> scale);
void fp8_quantize_scalar(std::span<const float> x, int block, std::span<float> q, std::span<float> scale);

void fp8_roundtrip(std::span<float> x, int block);  // in place, blocks of `block`
void fp4_roundtrip(std::span<float> x, int block);  // in place, blocks of `block`

}  // namespace dsv4
