#pragma once
// What the kernels (cuda/ops_*.cu, cuda/rng_kernels.cu) share: launch sizes, grid-stride loops, dynamic
// shared memory and the launch itself, checked.
//
// The same sources also compile without nvcc, as host C++ against cuda/on_host/cuda_runtime.h, which runs
// each launch's threads on the CPU (cuda/on_host/kernel_threads.cc): the kernels' tests then run in every
// build, GPU or not. Only launch() and dynamic_shared() differ between the two.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/result.h"

namespace trainrr::cuda::detail {

constexpr int kBlock = 256;
// Elementwise kernels loop grid-stride over at most this many blocks: any n fits, and an element's value never
// depends on which thread computes it.
constexpr int64_t kMaxBlocks = 1 << 16;

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kBlock - 1) / kBlock, 1, kMaxBlocks));
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// The launch just made, checked: an error names the kernel.
inline Status launched(const char* kernel) {
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return Error{std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                 ")"};
  return {};
}

inline Status bad_argument(const char* op, const std::string& why) { return Error{std::string(op) + ": " + why}; }

// Launches `kernel` on `stream` (null: the default stream) and checks the launch: an error names the kernel.
// The arguments convert to the kernel's parameters as in a call.
template <class... Params, class... Args>
Status launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
              void* stream, Args... args) {
#if defined(__CUDACC__)
  kernel<<<grid, block, shared_bytes, as_stream(stream)>>>(static_cast<Params>(args)...);
#else
  (void)stream;  // the host runs a launch at once, in the order of the calls
  host_kernels::run(name, grid, block, shared_bytes, [&] { kernel(static_cast<Params>(args)...); });
#endif
  return launched(name);
}

// The block's dynamic shared memory (the launch's shared_bytes), as an array of T: a T* on the GPU; on the
// host, an array whose every access is checked for a race (cuda/on_host/cuda_runtime.h). Kernels hold it as
// `auto`.
#if defined(__CUDACC__)
template <class T>
__device__ inline T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  return reinterpret_cast<T*>(shared_bytes);
}
#else
template <class T>
inline host_kernels::SharedArray<T> dynamic_shared() {
  return host_kernels::SharedArray<T>(host_kernels::shared_memory());
}
#endif

__device__ inline int64_t first_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// std::clamp(v, lo, hi) and std::max(a, b) as libstdc++ writes them, so that a NaN goes where it goes on the CPU.
__device__ inline float clamp_like_std(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }
__device__ inline float max_like_std(float a, float b) { return a < b ? b : a; }

}  // namespace trainrr::cuda::detail
