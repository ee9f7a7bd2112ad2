#include "cuda/rng_kernels.h"

#include <cuda_runtime.h>

#include <string>

#include "engine/counter_rng.h"

namespace trainrr::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void uniform_kernel(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = rng::uniform_between(rng::stream_word(key, offset + static_cast<uint64_t>(i)), lo, hi);
}

__global__ void dropout_kernel(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                               uint8_t* keep, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  // The CPU draws uniform(0, 1) and compares it with the rate: the same two steps here.
  const float u = rng::uniform_between(rng::stream_word(key, offset + static_cast<uint64_t>(i)), 0.0f, 1.0f);
  const bool k = rng::dropout_keeps(u, rate);
  keep[i] = k;
  y[i] = rng::dropout_apply(k, x[i], scale);
}

Status launched(const char* kernel) {
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return Error{std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
  return {};
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kBlock - 1) / kBlock); }

}  // namespace

Status uniform_on_device(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n, void* stream) {
  if (n <= 0) return {};
  uniform_kernel<<<blocks_for(n), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(key, offset, lo, hi, out, n);
  return launched("uniform_kernel");
}

Status dropout_on_device(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                         uint8_t* keep, int64_t n, void* stream) {
  if (n <= 0) return {};
  dropout_kernel<<<blocks_for(n), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(key, offset, rate, scale, x, y,
                                                                                   keep, n);
  return launched("dropout_kernel");
}

Status uniform_on_gpu(uint64_t key, uint64_t offset, float lo, float hi, std::span<float> out) {
  const int64_t n = static_cast<int64_t>(out.size());
  float* d = nullptr;
  auto failed = [](const char* call, cudaError_t e) {
    return Error{std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
  };
  if (cudaError_t e = cudaMalloc(&d, sizeof(float) * out.size()); e != cudaSuccess) return failed("cudaMalloc", e);
  Status s = uniform_on_device(key, offset, lo, hi, d, n, nullptr);
  const cudaError_t copied =
      s ? cudaMemcpy(out.data(), d, sizeof(float) * out.size(), cudaMemcpyDeviceToHost) : cudaSuccess;
  cudaFree(d);
  if (copied != cudaSuccess) return failed("cudaMemcpy", copied);
  return s;
}

}  // namespace trainrr::cuda
