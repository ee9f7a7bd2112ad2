#include <cuda_runtime.h>

#include <string>

#include "cuda/ops_common.cuh"
#include "cuda/rng_kernels.h"
#include "engine/counter_rng.h"

namespace trainrr::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

__global__ void uniform_kernel(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    out[i] = rng::uniform_between(rng::stream_word(key, offset + static_cast<uint64_t>(i)), lo, hi);
}

__global__ void dropout_kernel(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                               uint8_t* keep, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    // The CPU draws uniform(0, 1) and compares it with the rate: the same two steps here.
    const float u =
        rng::uniform_between(rng::stream_word(key, offset + static_cast<uint64_t>(i)), 0.0f, 1.0f);
    const bool k = rng::dropout_keeps(u, rate);
    keep[i] = k;
    y[i] = rng::dropout_apply(k, x[i], scale);
  }
}

}  // namespace

Status uniform_on_device(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n, void* stream) {
  if (n <= 0) return {};
  return detail::launch("uniform_kernel", uniform_kernel, detail::blocks_for(n), detail::kBlock, 0, stream,
                        key, offset, lo, hi, out, n);
}

Status dropout_on_device(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                         uint8_t* keep, int64_t n, void* stream) {
  if (n <= 0) return {};
  return detail::launch("dropout_kernel", dropout_kernel, detail::blocks_for(n), detail::kBlock, 0, stream,
                        key, offset, rate, scale, x, y, keep, n);
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
