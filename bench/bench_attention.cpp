// Attention of one layer at V4-Flash's attention shapes (64 query heads sharing one kv head of
// 512, window 128, indexer 64 heads x 128, top-512) with tiny float projections (dim 16, ranks
// 2 and 1), so the time is the attention itself: the indexer's scoring, unpacking the cache and the
// softmax over window + compressed keys. act_quant on: the cache is stored packed.
//   BM_prefill/<ratio>/<ctx>/<threads>: ctx tokens fed in chunks of 256 from an empty cache.
//   BM_decode/<ratio>/<ctx>/<threads>: one-token steps after a prefill of ctx tokens.
// Run: build/bench_attention [--benchmark_filter=...]. Not a test: timings are noisy.
#include <benchmark/benchmark.h>

#include <cstring>
#include <deque>
#include <random>

#include "core/thread_pool.h"
#include "model/attention.h"

namespace {

using namespace dsv4;

struct Layer {
  ModelConfig c;
  BlockWeights b;
  Rope rope{64, 160000.0, 65536, 16, 32, 1};
  std::deque<std::vector<float>> owned;
  std::mt19937 rng{1};

  Linear lin(int out, int in) {
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(static_cast<float>(in)));
    std::vector<float>& w = owned.emplace_back(static_cast<size_t>(out) * in);
    for (float& v : w) v = nd(rng);
    Linear l;
    l.format = WeightFormat::f32;
    l.out = out;
    l.in = in;
    l.weight = reinterpret_cast<const uint8_t*>(w.data());
    return l;
  }
  CompressorWeights compressor(int ratio, int hd) {
    CompressorWeights w;
    w.ratio = ratio;
    w.head_dim = hd;
    w.overlap = ratio == 4;
    const int coff = w.overlap ? 2 : 1;
    w.ape.assign(static_cast<size_t>(ratio) * coff * hd, 0.0f);
    w.wkv = lin(coff * hd, c.hidden_size);
    w.wgate = lin(coff * hd, c.hidden_size);
    w.norm.assign(hd, 1.0f);
    return w;
  }

  explicit Layer(int ratio) {
    c.hidden_size = 16;
    c.num_attention_heads = 64;
    c.head_dim = 512;
    c.qk_rope_head_dim = 64;
    c.q_lora_rank = 2;
    c.o_groups = 8;
    c.o_lora_rank = 1;
    c.sliding_window = 128;
    c.index_n_heads = 64;
    c.index_head_dim = 128;
    c.index_topk = 512;
    AttentionWeights& a = b.attn;
    b.compress_ratio = ratio;
    a.attn_sink.assign(c.num_attention_heads, 0.0f);
    a.wq_a = lin(c.q_lora_rank, c.hidden_size);
    a.q_norm.assign(c.q_lora_rank, 1.0f);
    a.wq_b = lin(c.num_attention_heads * c.head_dim, c.q_lora_rank);
    a.wkv = lin(c.head_dim, c.hidden_size);
    a.kv_norm.assign(c.head_dim, 1.0f);
    a.wo_a = lin(c.o_groups * c.o_lora_rank, c.num_attention_heads * c.head_dim / c.o_groups);
    a.wo_b = lin(c.hidden_size, c.o_groups * c.o_lora_rank);
    if (ratio) a.compressor = compressor(ratio, c.head_dim);
    if (ratio == 4) {
      IndexerWeights ix;
      ix.wq_b = lin(c.index_n_heads * c.index_head_dim, c.q_lora_rank);
      ix.weights_proj = lin(c.index_n_heads, c.hidden_size);
      ix.compressor = compressor(4, c.index_head_dim);
      a.indexer = std::move(ix);
    }
  }

  // Feeds n tokens of random input at pos.
  void feed(LayerCache& cache, int n, long long pos) {
    std::normal_distribution<float> nd;
    std::vector<float> x(static_cast<size_t>(n) * c.hidden_size), out(x.size());
    for (float& v : x) v = nd(rng);
    attention_forward(b.attn, b.compress_ratio, c, rope, x, n, pos, /*act_quant=*/true, cache, out);
    benchmark::DoNotOptimize(out.data());
  }
  LayerCache fresh() {
    LayerCache cache;
    layer_cache_init(b, c, /*act_quant=*/true, cache);
    return cache;
  }
};

void BM_prefill(benchmark::State& state) {
  Layer l(static_cast<int>(state.range(0)));
  const int ctx = static_cast<int>(state.range(1));
  set_num_threads(static_cast<int>(state.range(2)));
  for (auto _ : state) {
    LayerCache cache = l.fresh();
    for (int p = 0; p < ctx; p += 256) l.feed(cache, std::min(256, ctx - p), p);
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(ctx) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_decode(benchmark::State& state) {
  Layer l(static_cast<int>(state.range(0)));
  const int ctx = static_cast<int>(state.range(1));
  set_num_threads(static_cast<int>(state.range(2)));
  LayerCache cache = l.fresh();
  for (int p = 0; p < ctx; p += 256) l.feed(cache, std::min(256, ctx - p), p);
  long long pos = ctx;
  for (auto _ : state) l.feed(cache, 1, pos++);
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_prefill)->Args({4, 1024, 1})->Args({4, 1024, 2})->Args({128, 1024, 1})->Args({128, 1024, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_decode)->Args({4, 2048, 1})->Args({4, 2048, 2})->Args({128, 2048, 1})->Args({128, 2048, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
