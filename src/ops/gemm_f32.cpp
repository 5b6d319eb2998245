#include "ops/gemm_f32.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/cpu.h"
#include "core/thread_pool.h"

namespace dsv4 {

namespace {

#define DSV4_AVX512F __attribute__((target("avx512f,avx2,fma")))

// What every tile of one product shares. A(i, kk) = a[i * a_row + kk * a_col]; C's rows are ldc apart.
struct Operands {
  size_t a_row, a_col;
  size_t ldc;
  int k0, k1;       // this pass's part of the chain
  bool from_c;      // the chain goes on from C's values (a later pass), else from zero
  bool accumulate;  // the finished chain is added to C (single-pass products only)
};

// One tile: R rows of A from `a` (its row i0, kk = 0), against the B panel whose column j is
// b[kk * ldb + j], into C from `c` (its element (i0, j0)); the first `cols` columns of the tile.
//
// AVX-512: R rows x 32 columns, its masks native, so every tile takes them.
template <int R>
DSV4_AVX512F void tile_avx512(const Operands& o, const float* a, const float* b, size_t ldb, float* c, int cols) {
  const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1);
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    const float* ci = c + static_cast<size_t>(i) * o.ldc;
    acc[i][0] = o.from_c ? _mm512_maskz_loadu_ps(m0, ci) : _mm512_setzero_ps();
    acc[i][1] = o.from_c ? _mm512_maskz_loadu_ps(m1, ci + 16) : _mm512_setzero_ps();
  }
  const float* bk = b + static_cast<size_t>(o.k0) * ldb;
  for (int kk = o.k0; kk < o.k1; ++kk, bk += ldb) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, bk), b1 = _mm512_maskz_loadu_ps(m1, bk + 16);
    const float* ak = a + static_cast<size_t>(kk) * o.a_col;
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(ak[static_cast<size_t>(i) * o.a_row]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    float* ci = c + static_cast<size_t>(i) * o.ldc;
    if (o.accumulate) {
      acc[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc[i][0]);
      acc[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc[i][1]);
    }
    _mm512_mask_storeu_ps(ci, m0, acc[i][0]);
    _mm512_mask_storeu_ps(ci + 16, m1, acc[i][1]);
  }
}

// AVX2: R rows x 16 columns. A whole tile (Full) takes plain loads and stores: AVX2's masked
// ones are slow (a masked store is microcoded on AMD's cores), so only the last column tile
// of a product pays for them.
template <bool Full>
struct Lanes16 {
  __m256i m0, m1;
  DSV4_AVX2 explicit Lanes16(int cols) {
    alignas(32) static constexpr int kLanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const __m256i lim = _mm256_set1_epi32(cols);
    m0 = _mm256_cmpgt_epi32(lim, _mm256_load_si256(reinterpret_cast<const __m256i*>(kLanes)));
    m1 = _mm256_cmpgt_epi32(lim, _mm256_load_si256(reinterpret_cast<const __m256i*>(kLanes + 8)));
  }
  DSV4_AVX2 __m256 load0(const float* p) const { return Full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m0); }
  DSV4_AVX2 __m256 load1(const float* p) const { return Full ? _mm256_loadu_ps(p + 8) : _mm256_maskload_ps(p + 8, m1); }
  DSV4_AVX2 void store(float* p, __m256 v0, __m256 v1) const {
    if (Full) _mm256_storeu_ps(p, v0), _mm256_storeu_ps(p + 8, v1);
    else _mm256_maskstore_ps(p, m0, v0), _mm256_maskstore_ps(p + 8, m1, v1);
  }
};

// How A's elements lie: the layouts the trainer uses get their strides at compile time, so that
// a broadcast's address is a base register plus kk (row-major) or plus a constant (transposed).
enum class ALayout { rows, columns, strided };  // a_col == 1; a_row == 1; anything else

template <ALayout L>
struct AWalk {
  size_t a_row, a_col;
  DSV4_AVX2 size_t row(int i) const { return L == ALayout::columns ? static_cast<size_t>(i) : i * a_row; }
  DSV4_AVX2 size_t step() const { return L == ALayout::rows ? 1 : a_col; }
};

template <int R, bool Full, ALayout L>
DSV4_AVX2 void tile_avx2_cols(const Operands& o, const float* a, const float* b, size_t ldb, float* c, int cols) {
  const Lanes16<Full> l(cols);
  // The operands in locals: read through `o` in the loop, they were loaded again every kk.
  const AWalk<L> w{o.a_row, o.a_col};
  const size_t ldc = o.ldc;
  const int k0 = o.k0, k1 = o.k1;
  __m256 acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const float* ci = c + static_cast<size_t>(i) * ldc;
    acc[i][0] = o.from_c ? l.load0(ci) : _mm256_setzero_ps();
    acc[i][1] = o.from_c ? l.load1(ci) : _mm256_setzero_ps();
  }
  const float* bk = b + static_cast<size_t>(k0) * ldb;
  const float* ak = a + static_cast<size_t>(k0) * w.step();
  for (int kk = k0; kk < k1; ++kk, bk += ldb, ak += w.step()) {
    const __m256 b0 = l.load0(bk), b1 = l.load1(bk);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(ak + w.row(i));
      acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* ci = c + static_cast<size_t>(i) * ldc;
    if (o.accumulate) acc[i][0] = _mm256_add_ps(l.load0(ci), acc[i][0]), acc[i][1] = _mm256_add_ps(l.load1(ci), acc[i][1]);
    l.store(ci, acc[i][0], acc[i][1]);
  }
}

template <int R>
void tile_avx2(const Operands& o, const float* a, const float* b, size_t ldb, float* c, int cols) {
  const bool full = cols == 16;
  if (o.a_col == 1) return full ? tile_avx2_cols<R, true, ALayout::rows>(o, a, b, ldb, c, cols)
                                : tile_avx2_cols<R, false, ALayout::rows>(o, a, b, ldb, c, cols);
  if (o.a_row == 1) return full ? tile_avx2_cols<R, true, ALayout::columns>(o, a, b, ldb, c, cols)
                                : tile_avx2_cols<R, false, ALayout::columns>(o, a, b, ldb, c, cols);
  return full ? tile_avx2_cols<R, true, ALayout::strided>(o, a, b, ldb, c, cols)
              : tile_avx2_cols<R, false, ALayout::strided>(o, a, b, ldb, c, cols);
}

using Tile = void (*)(const Operands&, const float*, const float*, size_t, float*, int);

template <int... R>
constexpr auto avx512_tiles(std::integer_sequence<int, R...>) {
  return std::array<Tile, sizeof...(R)>{&tile_avx512<R + 1>...};
}
template <int... R>
constexpr auto avx2_tiles(std::integer_sequence<int, R...>) {
  return std::array<Tile, sizeof...(R)>{&tile_avx2<R + 1>...};
}

constexpr int kRows512 = 12, kCols512 = 32, kRows2 = 6, kCols2 = 16;
constexpr size_t kPackRowTiles = 8, kPackMax = size_t{16} << 20;

// A thread's scratch buffer at least n long: it only grows (a resize down and up again would
// zero the regrown part, megabytes a training step).
void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

GemmPath gemm_f32_path() {
  static const GemmPath p = !use_avx2_fma() ? GemmPath::scalar : use_avx512() ? GemmPath::avx512 : GemmPath::avx2;
  return p;
}

void gemm_f32_reference(int m, int n, int k, const float* a, size_t a_row, size_t a_col, const float* b, size_t ldb,
                        float* c, size_t ldc, bool accumulate) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int kk = 0; kk < k; ++kk)
        acc = std::fma(a[static_cast<size_t>(i) * a_row + static_cast<size_t>(kk) * a_col],
                       b[static_cast<size_t>(kk) * ldb + j], acc);
      float& out = c[static_cast<size_t>(i) * ldc + j];
      out = accumulate ? out + acc : acc;
    }
}

int gemm_f32_panel_cols(GemmPath path) { return path == GemmPath::avx512 ? kCols512 : kCols2; }

void gemm_f32_with(GemmPath path, int m, int n, int k, const float* a, size_t a_row, size_t a_col, const float* b,
                   size_t ldb, float* c, size_t ldc, bool accumulate) {
  DSV4_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_f32: negative size");
  if (m == 0 || n == 0) return;
  if (path == GemmPath::scalar) return gemm_f32_reference(m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate);
  const bool wide = path == GemmPath::avx512;
  const int tr = wide ? kRows512 : kRows2, tc = wide ? kCols512 : kCols2;
  static const auto t512 = avx512_tiles(std::make_integer_sequence<int, kRows512>());
  static const auto t2 = avx2_tiles(std::make_integer_sequence<int, kRows2>());
  // A long chain (the weight gradients' sum over a batch's rows) runs in passes of kChain:
  // each pass stores its partial sums in C and the next goes on from them, the same chain of
  // fused multiply-adds, while the pass's panels of A and B stay in the first-level cache
  // across the tiles. An accumulating product computes its chains apart, then adds them.
  constexpr int kChain = 256;
  if (accumulate && k > kChain) {
    thread_local std::vector<float> chains;  // the calling thread's, kept for its next product
    grow(chains, static_cast<size_t>(m) * n);
    float* sums = chains.data();
    gemm_f32_with(path, m, n, k, a, a_row, a_col, b, ldb, sums, n, false);
    pool().parallel_for(static_cast<size_t>(m), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i)
        for (int j = 0; j < n; ++j) c[i * ldc + j] = c[i * ldc + j] + sums[i * n + j];
    });
    return;
  }
  const size_t row_tiles = (m + tr - 1) / tr, col_tiles = (n + tc - 1) / tc;
  // B's column panels, read once per row tile, are copied into contiguous [k][tc] blocks (zeros
  // past n) when enough row tiles share them: read in place, a panel's rows lie ldb apart, and
  // the power-of-two widths of the model's matrices put them all in a few sets of the
  // first-level cache, which then cannot hold one panel (1.2-1.9x on the trainer's products).
  // The copy lives in a buffer of the calling thread's, kept for its next product; a B too
  // large to copy (kPackMax floats) is read in place, and so is one that is a panel already
  // (n <= tc, ldb = tc: gram_nt's).
  const size_t panel_floats = col_tiles * tc * static_cast<size_t>(k);
  const bool one_panel = n <= tc && ldb == static_cast<size_t>(tc);
  const bool pack = row_tiles >= kPackRowTiles && panel_floats <= kPackMax && !one_panel;
  thread_local std::vector<float> panels;
  if (pack) {
    grow(panels, panel_floats);
    float* dst = panels.data();
    pool().parallel_for(col_tiles, [&](size_t q0, size_t q1) {
      for (size_t q = q0; q < q1; ++q) {
        const int j0 = static_cast<int>(q) * tc, cols = std::min(tc, n - j0);
        float* d = dst + q * tc * static_cast<size_t>(k);
        const float* src = b + j0;
        // A whole panel's rows by a copy of constant size, inlined (a call to memmove per 64
        // bytes was 4% of a training step); the last panel's by the general copy and padding.
        if (cols == tc && tc == kCols2)
          for (int kk = 0; kk < k; ++kk, d += tc, src += ldb) std::memcpy(d, src, kCols2 * sizeof(float));
        else if (cols == tc && tc == kCols512)
          for (int kk = 0; kk < k; ++kk, d += tc, src += ldb) std::memcpy(d, src, kCols512 * sizeof(float));
        else
          for (int kk = 0; kk < k; ++kk, d += tc, src += ldb) {
            std::copy_n(src, cols, d);
            std::fill(d + cols, d + tc, 0.0f);
          }
      }
    });
  }
  const float* packed = panels.data();
  // The larger operand is walked once: when A has more rows than B has columns, a thread goes
  // row tile by row tile (A's rows stay in the first-level cache across the column tiles, B's
  // panels in the second), else column panel by column panel (a panel stays across the row
  // tiles). A read down its columns (a transposed operand: a_row == 1, a_col its row length)
  // is then copied per row tile into [k][tr]: in place, consecutive kk lie a_col apart, and the
  // gradients' power-of-two widths put them in one set of the first-level cache.
  const bool rows_first = m > n;
  const bool pack_a = rows_first && a_col != 1 && col_tiles > 1;
  pool().parallel_for(row_tiles * col_tiles, [&](size_t t0, size_t t1) {
    thread_local std::vector<float> a_panel;  // the calling thread's copy of a row tile of A
    if (pack_a) grow(a_panel, static_cast<size_t>(k) * tr);
    for (int k0 = 0; k0 < std::max(k, 1); k0 += kChain) {
      const int k1 = std::min(k, k0 + kChain);
      Operands o{a_row, a_col, ldc, k0, k1, k0 > 0, accumulate};
      size_t copied = row_tiles;  // which row tile a_panel holds for this pass
      for (size_t t = t0; t < t1; ++t) {
        const size_t q = rows_first ? t % col_tiles : t / row_tiles, r = rows_first ? t / col_tiles : t % row_tiles;
        const int j0 = static_cast<int>(q) * tc, i0 = static_cast<int>(r) * tr;
        const int rows = std::min(tr, m - i0), cols = std::min(tc, n - j0);
        const float* ai = a + static_cast<size_t>(i0) * a_row;
        if (pack_a) {
          if (copied != r) {
            for (int kk = k0; kk < k1; ++kk)
              for (int i = 0; i < rows; ++i)
                a_panel[static_cast<size_t>(kk) * tr + i] = ai[static_cast<size_t>(i) * a_row + kk * a_col];
            copied = r;
          }
          o.a_row = 1, o.a_col = tr, ai = a_panel.data();
        }
        const float* panel = pack ? packed + q * tc * static_cast<size_t>(k) : b + j0;
        (wide ? t512[rows - 1] : t2[rows - 1])(o, ai, panel, pack ? static_cast<size_t>(tc) : ldb,
                                               c + static_cast<size_t>(i0) * ldc + j0, cols);
      }
    }
  });
}

void gemm_f32(int m, int n, int k, const float* a, size_t a_row, size_t a_col, const float* b, size_t ldb, float* c,
              size_t ldc, bool accumulate) {
  gemm_f32_with(gemm_f32_path(), m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate);
}

}  // namespace dsv4
