// The AVX2 body of fp8_quantize (internal to src/quant; callers use act_quant.h).
#pragma once

namespace dsv4 {

// One block of `block` values (a multiple of 8): the unscaled e4m3 values into q, the
// block's scale returned. Bitwise the same as the scalar reference.
float fp8_quantize_block_avx2(const float* x, int block, float* q);

// max |x_k| over x [n], NaNs ignored (as std::max(most, |x|) ignores them): the same value as a
// scalar loop, in 4 vector chains (one scalar chain over a 4096-wide row took ~3 us).
float max_magnitude_avx2(const float* x, int n);

}  // namespace dsv4
