// The host's launch of a kernel (cuda/on_host/cuda_runtime.h): every thread once, barriers kept, the shapes
// CUDA refuses refused, and a kernel that misuses __syncthreads stopped by name.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/ops_common.cuh"

namespace trainrr {
namespace {

using cuda::detail::dynamic_shared;
using cuda::detail::launch;

// Each thread adds its flat global index to its own slot: a slot holding anything else ran twice or never.
__global__ void mark_kernel(int64_t* seen, int64_t n) {
  const int64_t block = (static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t thread =
      (static_cast<int64_t>(threadIdx.z) * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const int64_t i = block * blockDim.x * blockDim.y * blockDim.z + thread;
  if (i < n) seen[i] += i + 1;
}

TEST(HostKernels, EveryThreadOfEveryBlockRunsOnceWithItsCoordinates) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const int64_t n = 3 * 2 * 2 * 4 * 3 * 2;
  std::vector<int64_t> seen(n, 0);
  ASSERT_TRUE(launch("mark_kernel", mark_kernel, grid, block, 0, nullptr, seen.data(), n));
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], i + 1) << "thread " << i;
}

// Reverses a block's values through shared memory. Without the barrier, a thread may read its partner's word
// before the partner wrote it: the GPU's race.
template <bool kBarrier>
__global__ void reverse_kernel(const float* in, float* out) {
  const auto s = dynamic_shared<float>();
  const unsigned t = threadIdx.x, n = blockDim.x;
  s[t] = in[blockIdx.x * n + t];
  if constexpr (kBarrier) __syncthreads();
  out[blockIdx.x * n + t] = s[n - 1 - t];
}

TEST(HostKernels, ABarrierMakesEveryWriteBeforeItVisible) {
  const unsigned blocks = 2, threads = 64;
  std::vector<float> in(blocks * threads), out(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  ASSERT_TRUE(launch("reverse_kernel<true>", reverse_kernel<true>, blocks, threads, threads * sizeof(float),
                     nullptr, in.data(), out.data()));
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t) EXPECT_EQ(out[b * threads + t], in[b * threads + threads - 1 - t]);
}

// Shared memory starts as whatever it held: NaN here, so that a word read before any write shows.
__global__ void read_unwritten_kernel(float* out) { out[threadIdx.x] = dynamic_shared<float>()[threadIdx.x]; }

TEST(HostKernels, SharedMemoryStartsAsNaN) {
  std::vector<float> out(4, 0.0f);
  ASSERT_TRUE(
      launch("read_unwritten_kernel", read_unwritten_kernel, 1, 4, 4 * sizeof(float), nullptr, out.data()));
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

TEST(HostKernels, ALaunchCudaRefusesRunsNothingAndNamesTheKernel) {
  std::vector<int64_t> seen(2048, 0);
  const struct {
    dim3 grid, block;
    size_t shared;
  } refused[] = {{dim3(1), dim3(1025), 0},     {dim3(1), dim3(32, 33), 0}, {dim3(1), dim3(1, 1, 65), 0},
                 {dim3(1, 65536), dim3(1), 0}, {dim3(0), dim3(32), 0},     {dim3(1), dim3(32), 49153}};
  for (const auto& r : refused) {
    const Status s =
        launch("mark_kernel", mark_kernel, r.grid, r.block, r.shared, nullptr, seen.data(), int64_t{2048});
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().message,
              "mark_kernel: launch failed: cudaErrorInvalidConfiguration (invalid configuration argument)");
  }
  for (int64_t v : seen) EXPECT_EQ(v, 0);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the error was read by the launch's check
}

// The race checks: a read after another thread's write, a write after another's read, two threads' writes.
__global__ void write_then_read_neighbour_kernel(float* out) {
  const auto s = dynamic_shared<float>();
  s[threadIdx.x] = 1.0f;
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

__global__ void same_word_kernel(float* out) {
  dynamic_shared<float>()[0] = static_cast<float>(threadIdx.x);
  out[threadIdx.x] = 0.0f;
}

__global__ void past_the_end_kernel(float* out) { out[0] = dynamic_shared<float>()[blockDim.x]; }

TEST(HostKernelsDeathTest, ARaceOnSharedMemoryStopsNamingBothThreadsAndTheWord) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> in(64, 1.0f), out(64);
  // The last thread runs first: thread 32 reads word 31 before thread 31 writes it.
  EXPECT_DEATH(
      (void)launch("reverse_kernel<false>", reverse_kernel<false>, 1, 64, 64 * sizeof(float), nullptr,
                   in.data(), out.data()),
      "reverse_kernel<false>: a race on shared memory in block \\(0, 0, 0\\): word 31 \\(byte 124\\) written "
      "by thread \\(31, 0, 0\\) after thread \\(32, 0, 0\\) read it, with no __syncthreads between");
  // Thread 7 runs first and writes word 7; thread 6 then reads it.
  EXPECT_DEATH((void)launch("write_then_read_neighbour_kernel", write_then_read_neighbour_kernel, 1, 8,
                            8 * sizeof(float), nullptr, out.data()),
               "word 7 \\(byte 28\\) read by thread \\(6, 0, 0\\) after thread \\(7, 0, 0\\) wrote it");
  EXPECT_DEATH((void)launch("same_word_kernel", same_word_kernel, 1, 2, sizeof(float), nullptr, out.data()),
               "word 0 \\(byte 0\\) written by thread \\(0, 0, 0\\) after thread \\(1, 0, 0\\) wrote it");
  EXPECT_DEATH(
      (void)launch("past_the_end_kernel", past_the_end_kernel, 1, 4, 4 * sizeof(float), nullptr, out.data()),
      "past_the_end_kernel: shared memory bytes \\[16, 20\\) are outside the launch's 16 bytes");
}

__global__ void early_return_kernel(float* out) {
  if (threadIdx.x % 2 == 0) return;
  dynamic_shared<float>()[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void barrier_without_shared_kernel(float* out) {
  out[threadIdx.x] = 1.0f;
  __syncthreads();
}

TEST(HostKernelsDeathTest, AKernelWhoseThreadsDisagreeOnABarrierStops) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> out(8);
  EXPECT_DEATH(
      (void)launch("early_return_kernel", early_return_kernel, 1, 8, 8 * sizeof(float), nullptr, out.data()),
      "early_return_kernel: in block \\(0, 0, 0\\), 4 threads wait at __syncthreads while 4 have returned");
  EXPECT_DEATH(
      (void)launch("barrier_without_shared_kernel", barrier_without_shared_kernel, 1, 8, 0, nullptr,
                   out.data()),
      "barrier_without_shared_kernel: calls __syncthreads in a launch without dynamic shared memory");
}

}  // namespace
}  // namespace trainrr
