// Matrix-product kernels side by side: GFLOP/s of every registered matmul candidate this CPU can run,
// OpenBLAS sgemm included, on the same operands.
//
//   kernels_bench --benchmark_filter=512x512x512/threads:1
//
// The ratio that matters is f32_matmul__cpu_blocked_avx2 over f32_matmul__openblas_sgemm at 512^3 on one thread.

#include <benchmark/benchmark.h>

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

}  // namespace
}  // namespace trainrr

int main(int argc, char** argv) {
  using namespace trainrr;
  auto registry = std::make_unique<KernelRegistry>();  // outlives the benchmarks that point into it
  register_cpu_kernels(*registry);
  const Isa cpu = detect_isa();
  // 512^3 is the headline; the others are training shapes (MLP 784-512 at batch 128, its weight gradient).
  const Shape shapes[] = {{512, 512, 512, false, false},
                          {128, 512, 784, false, false},
                          {784, 512, 128, true, false},
                          {128, 784, 512, false, true}};
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
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("isa: %s, %s\n", isa_name(cpu), openblas_description().c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
