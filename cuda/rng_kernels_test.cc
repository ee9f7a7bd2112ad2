// The GPU's draws against the CPU streams', bit for bit (a GPU machine runs these; elsewhere they skip, and
// cuda_on_host_tests runs the same kernels on the CPU).

#include "cuda/rng_kernels.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <bit>
#include <vector>

#include "cuda/gpu_test_util.h"
#include "engine/counter_rng.h"
#include "engine/random.h"

namespace trainrr {
namespace {

TEST(GpuPhilox, UniformDrawsAreTheCpuStreamsBitForBit) {
  TRAINRR_REQUIRE_GPU();
  for (float lo : {0.0f, -0.05f}) {
    const float hi = lo == 0.0f ? 1.0f : 0.05f;
    RngStreams streams(1234, null_hooks());
    std::vector<float> skip(5), cpu(100003);
    streams.uniform("s", "dropout/d", skip, lo, hi);  // start mid-block
    streams.uniform("s", "dropout/d", cpu, lo, hi);
    std::vector<float> gpu(cpu.size());
    Status s = cuda::uniform_on_gpu(stream_key(1234, "dropout/d"), skip.size(), lo, hi, gpu);
    ASSERT_TRUE(s) << s.error().message;
    size_t mismatches = 0;
    for (size_t i = 0; i < cpu.size(); ++i) mismatches += std::bit_cast<uint32_t>(cpu[i]) != std::bit_cast<uint32_t>(gpu[i]);
    EXPECT_EQ(mismatches, 0u) << "of " << cpu.size();
  }
}

// The dropout kernel against the CPU layer's steps (engine/layers/dropout.cc): the stream's uniform draws
// from the same position, kept where at least the rate, scaled.
TEST(GpuPhilox, DropoutMasksAndOutputsAreTheCpuLayersBitForBit) {
  TRAINRR_REQUIRE_GPU();
  const int64_t n = 10007, skip = 6;
  const float rate = 0.3f, scale = static_cast<float>(1.0 / (1.0 - rate));
  RngStreams streams(77, null_hooks());
  std::vector<float> before(skip), u(n), x(n);
  streams.uniform("s", "dropout/d", before, 0.0f, 1.0f);
  streams.uniform("s", "dropout/d", u, 0.0f, 1.0f);
  std::vector<uint8_t> keep(n);
  std::vector<float> y(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i % 97) * 0.37f - 11.0f;
    keep[i] = rng::dropout_keeps(u[i], rate);
    y[i] = rng::dropout_apply(keep[i], x[i], scale);
  }
  float *d_x = nullptr, *d_y = nullptr;
  uint8_t* d_keep = nullptr;
  ASSERT_EQ(cudaMalloc(&d_x, sizeof(float) * n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_y, sizeof(float) * n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_keep, n), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_x, x.data(), sizeof(float) * n, cudaMemcpyHostToDevice), cudaSuccess);
  Status s =
      cuda::dropout_on_device(stream_key(77, "dropout/d"), skip, rate, scale, d_x, d_y, d_keep, n, nullptr);
  ASSERT_TRUE(s) << s.error().message;
  std::vector<float> gpu_y(n);
  std::vector<uint8_t> gpu_keep(n);
  ASSERT_EQ(cudaMemcpy(gpu_y.data(), d_y, sizeof(float) * n, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(gpu_keep.data(), d_keep, n, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_x), cudaFree(d_y), cudaFree(d_keep);
  EXPECT_EQ(gpu_keep, keep);
  size_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i)
    mismatches += std::bit_cast<uint32_t>(y[i]) != std::bit_cast<uint32_t>(gpu_y[i]);
  EXPECT_EQ(mismatches, 0u) << "of " << n;
}

}  // namespace
}  // namespace trainrr
