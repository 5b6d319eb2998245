// Lossless packing of float rows that already lie on a block-scaled grid: every value of a
// block is an FP8 e4m3 (resp. FP4 e2m1) number times one power-of-two scale, as the activation
// round trips of act_quant.h leave them (the kv cache's non-rope dims, compressed kv entries,
// indexer keys). Stored as the codes plus one ue8m0 byte per block; unpacking gives the same
// floats bit for bit. This file owns the byte layout and its exactness, not which rows are on a
// grid (that is the model's business, model/kv_cache.h).
//
// The stored scale need not be the round trip's own. The packer takes the smallest power of two
// that brings the block's largest magnitude within the format's range (448, resp. 6), clamped
// to >= 2^-126 so that it is a normal float. Both grids are closed under doubling below their
// maximum (e4m3 subnormals m * 2^-9 double into the normals, e2m1's 0.5 into 1), so a value
// q * s of the round trip is also (q * 2^k) * (s / 2^k) for every k that keeps |q * 2^k| in
// range, and the product is the same float.
//
// Packing checks every value and throws Error when one is not on the grid (NaN and infinity
// included), always, not only in debug builds: a row packed from the wrong place (say with the
// rounding switched off) would otherwise silently change results. The check is one table
// lookup per value, and packing happens once per stored row (a token's kv vector, or one
// compressed entry), negligible next to the projection that produced the row.
#pragma once

#include <cstdint>
#include <span>

namespace dsv4 {

// x [n] in blocks of `block` -> codes [n] (e4m3 bytes), scales [n / block] (ue8m0 bytes).
void pack_fp8_blocks(std::span<const float> x, int block, std::span<uint8_t> codes,
                     std::span<uint8_t> scales);
// codes [n], scales [n / block] -> x [n]. Fast path when use_avx2_fma(); bit-identical.
void unpack_fp8_blocks(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int block,
                       std::span<float> x);

// x [n] in blocks of `block` -> codes [n / 2] (e2m1 nibbles, low nibble = even index), scales
// [n / block] (ue8m0 bytes). n and block are even.
void pack_fp4_blocks(std::span<const float> x, int block, std::span<uint8_t> codes,
                     std::span<uint8_t> scales);
void unpack_fp4_blocks(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int block,
                       std::span<float> x);

// The scalar references of the unpackers and their AVX2 versions, for the tests (the AVX2
// versions require use_avx2_fma()).
namespace scalar {
void unpack_fp8_blocks(const uint8_t* codes, const uint8_t* scales, int block, int n, float* x);
void unpack_fp4_blocks(const uint8_t* codes, const uint8_t* scales, int block, int n, float* x);
}  // namespace scalar
namespace avx2 {
void unpack_fp8_blocks(const uint8_t* codes, const uint8_t* scales, int block, int n, float* x);
void unpack_fp4_blocks(const uint8_t* codes, const uint8_t* scales, int block, int n, float* x);
}  // namespace avx2

}  // namespace dsv4
