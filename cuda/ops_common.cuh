#pragma once
// What the op kernels (cuda/ops_*.cu) share: launch sizes, grid-stride loops and the launch check.

#include <cuda_runtime.h>

#include <algorithm>
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

__device__ inline int64_t first_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// std::clamp(v, lo, hi) and std::max(a, b) as libstdc++ writes them, so that a NaN goes where it goes on the CPU.
__device__ inline float clamp_like_std(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }
__device__ inline float max_like_std(float a, float b) { return a < b ? b : a; }

}  // namespace trainrr::cuda::detail
