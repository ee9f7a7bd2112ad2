// The gradient allreduce per step of each variant against a plain MPI_Allreduce(MPI_SUM) of the same buckets,
// on the bench MLP's gradients (784-512-512-10: 669,706 floats, cut into trainrr's buckets), one shard per rank.
// Run under mpirun: mpirun -n 4 build/bench/allreduce_bench [steps]. Rank 0 prints the median time per step of
// each, measured in one run, interleaved step by step, and the ratio to MPI_Allreduce.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "distributed/mpi_collective.h"

using namespace trainrr;

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 30;
  auto comm = MpiCollective::init();
  if (!comm) {
    std::fprintf(stderr, "%s\n", comm.error().message.c_str());
    return 2;
  }
  MpiCollective& c = **comm;
  const std::vector<std::pair<std::string, int64_t>> params = {{"dense_1.kernel", 784 * 512}, {"dense_1.bias", 512},
                                                               {"dense_2.kernel", 512 * 512}, {"dense_2.bias", 512},
                                                               {"dense_3.kernel", 512 * 10},  {"dense_3.bias", 10}};
  const std::vector<Bucket> buckets = bucket_layout(params, kBucketBytes);
  int64_t total = 0;
  for (const auto& [name, n] : params) total += n;
  std::vector<float> grad(total), out(total);
  std::mt19937 gen(1234 + c.rank());
  std::normal_distribution<float> dist(0, 1e-2f);
  for (float& g : grad) g = dist(gen);

  const std::vector<std::string> variants = {"MPI_Allreduce", std::string(kAllreduceTree), std::string(kAllreduceExact),
                                             std::string(kAllreduceMpi), std::string(kAllreduceArrival)};
  std::vector<std::vector<double>> times(variants.size());
  for (int s = -2; s < steps; ++s) {  // two warm-up steps
    for (size_t v = 0; v < variants.size(); ++v) {
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      for (const Bucket& b : buckets) {
        if (v == 0) {
          MPI_Allreduce(grad.data() + b.offset, out.data() + b.offset, static_cast<int>(b.count), MPI_FLOAT, MPI_SUM,
                        MPI_COMM_WORLD);
        } else {
          CollectiveCall call;
          c.allreduce(variants[v], {std::span<const float>(grad.data() + b.offset, b.count)},
                      std::span<float>(out.data() + b.offset, b.count), call);
        }
      }
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      double slowest = 0;
      MPI_Reduce(&ms, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      if (s >= 0) times[v].push_back(slowest);
    }
  }
  if (c.rank() == 0) {
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const double base = median(times[0]);
    std::printf("allreduce of the bench MLP's gradients: %lld floats in %zu buckets, %d ranks, %d steps "
                "(median of the slowest rank per step)\n",
                static_cast<long long>(total), buckets.size(), c.size(), steps);
    for (size_t v = 0; v < variants.size(); ++v)
      std::printf("  %-26s %9.3f ms/step  %6.2fx MPI_Allreduce\n", variants[v].c_str(), median(times[v]),
                  median(times[v]) / base);
  }
  return 0;
}
