// Kernels side by side: GFLOP/s of every registered matmul candidate this CPU can run, OpenBLAS sgemm
// included, on the same operands; then the reductions and convolutions the default rule chooses among.
//
//   kernels_bench --benchmark_filter=512x512x512/threads:1
//
// The ratio that matters is f32_matmul__cpu_blocked_avx2 over f32_matmul__openblas_sgemm at 512^3 on one thread.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/thread_pool.h"

namespace trainrr {
namespace {

struct Shape {
  int64_t m, n, k;
  bool trans_a, trans_b;
};

void bench_matmul(benchmark::State& state, const Kernel* kernel, Shape s, int threads) {
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
  for (auto& x : a) x = dist(gen);
  for (auto& x : b) x = dist(gen);
  ThreadPool pool(threads);
  MatmulArgs args;
  args.trans_a = s.trans_a, args.trans_b = s.trans_b, args.m = s.m, args.n = s.n, args.k = s.k;
  args.a = a.data(), args.b = b.data(), args.c = c.data();
  for (auto _ : state) {
    kernel->matmul(args, pool);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * s.m * s.n * s.k;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void bench_reduce(benchmark::State& state, const Kernel* kernel, int64_t rows, int64_t cols, int threads) {
  std::vector<float> x(rows * cols, 0.5f), out(cols);
  ThreadPool pool(threads);
  for (auto _ : state) {
    kernel->reduce({x.data(), rows, cols, out.data()}, pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["Gelem/s"] = benchmark::Counter(rows * cols * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// A 3x3 "same" convolution over a batch of NHWC images.
void bench_conv(benchmark::State& state, const Kernel* kernel, int64_t n, int64_t hw, int64_t c_in, int64_t c_out,
                int threads) {
  Conv2dArgs a;
  a.n = n, a.h = a.w = a.out_h = a.out_w = hw, a.c_in = c_in, a.kh = a.kw = 3, a.c_out = c_out;
  a.pad_top = a.pad_left = 1;
  std::vector<float> x(n * hw * hw * c_in, 0.5f), f(9 * c_in * c_out, 0.25f), dy(n * hw * hw * c_out, 0.125f);
  std::vector<float> out(std::max({x.size(), f.size(), dy.size()}));
  a.x = x.data(), a.filter = f.data(), a.dy = dy.data(), a.out = out.data();
  ThreadPool pool(threads);
  for (auto _ : state) {
    kernel->conv(a, pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * hw * hw * 9 * c_in * c_out * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace
}  // namespace trainrr

int main(int argc, char** argv) {
  using namespace trainrr;
  auto registry = std::make_unique<KernelRegistry>();  // outlives the benchmarks that point into it
  register_cpu_kernels(*registry);
  const Isa cpu = detect_isa();
  // 512^3 is the headline; the others are training shapes: MLP 784-512 at batch 128 (forward, weight and
  // data gradients) and a 30-16-1 tabular model at batch 32, where fixed costs dominate.
  const Shape shapes[] = {{512, 512, 512, false, false}, {128, 512, 784, false, false}, {784, 512, 128, true, false},
                          {128, 784, 512, false, true},  {32, 16, 30, false, false},    {30, 16, 32, true, false}};
  const int max_threads = ThreadPool::hardware_threads();
  for (const Kernel& k : registry->all()) {
    if (k.info.op != OpKind::matmul || k.info.isa > cpu) continue;
    for (const Shape& s : shapes) {
      for (int threads : {1, max_threads}) {
        if (threads == max_threads && max_threads == 1) continue;
        // The reference loop takes seconds at 512^3 and shows nothing new with more threads.
        if (k.info.id == "f32_matmul__cpu_reference" && threads > 1) continue;
        const std::string name = k.info.id + "/" + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                 std::to_string(s.k) + (s.trans_a ? "_ta" : "") + (s.trans_b ? "_tb" : "") +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), bench_matmul, &k, s, threads)->Unit(benchmark::kMillisecond)->UseRealTime();
      }
    }
  }
  for (const Kernel& k : registry->all()) {
    if (k.info.isa > cpu) continue;
    for (int threads : {1, max_threads}) {
      const std::string t = "/threads:" + std::to_string(threads);
      if (k.info.op == OpKind::reduce) {
        // A dense layer's bias gradient at batch 128, and a long plain sum (a loss or a norm).
        benchmark::RegisterBenchmark((k.info.id + "/128x512" + t).c_str(), bench_reduce, &k, 128, 512, threads)
            ->UseRealTime();
        benchmark::RegisterBenchmark((k.info.id + "/1048576x1" + t).c_str(), bench_reduce, &k, 1 << 20, 1, threads)
            ->UseRealTime();
      }
      if (k.info.op == OpKind::conv2d_fwd || k.info.op == OpKind::conv2d_bwd_data ||
          k.info.op == OpKind::conv2d_bwd_filter) {
        // The second layer of a small MNIST convnet at batch 32: 26x26x32 -> 3x3x64.
        benchmark::RegisterBenchmark((k.info.id + "/n32_26x26x32_k3x3x64" + t).c_str(), bench_conv, &k, 32, 26, 32,
                                     64, threads)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("isa: %s, %s\n", isa_name(cpu), openblas_description().c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
