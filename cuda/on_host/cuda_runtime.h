#pragma once
// The part of the CUDA runtime that trainrr's kernels (cuda/ops_*.cu, cuda/rng_kernels.cu) and their tests
// (cuda/ops_test.cc, cuda/rng_kernels_test.cc) use, for the host compiler: with this folder first on the
// include path, `#include <cuda_runtime.h>` finds this file, and the kernels run on the CPU. Every build
// compiles and runs them so (the on_host tests), GPU or not, under AddressSanitizer too: a kernel that
// indexes past an array, a launch the GPU would refuse, a block whose threads disagree on __syncthreads, or
// an op whose result is not the CPU layer's is found on any machine.
//
// How a launch runs (cuda/on_host/kernel_threads.cc): blocks one after another, in index order (x fastest).
// Within a block, a launch without dynamic shared memory runs its threads one after another to the end; no
// kernel of trainrr's synchronises without shared memory, and one that calls __syncthreads there stops the
// process, naming itself. A launch with dynamic shared memory runs each thread as a fiber: every thread runs
// to its next __syncthreads (the last thread first), then all go on. Its shared memory starts as NaN bytes
// (0xff), as the GPU's holds whatever was there, and every access to it is checked as compute-sanitizer's
// racecheck does: a word that one thread writes and another reads or writes with no __syncthreads between
// stops the process, naming the kernel, the block, both threads and the word. Atomics are plain
// read-modify-writes (one thread runs at a time).
//
// What this does not show: the device's own math (expf, logf, tanhf are glibc's here), the GPU's memory
// model, timing and races between concurrently running threads, and anything of cuBLASLt, cuDNN or CUPTI.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// The running thread's coordinates, set by the launch before each thread (or fiber) runs.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
};

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace trainrr::host_kernels {

// Runs every thread of a launch of grid x block threads; `thread` runs one (threadIdx and blockIdx set). A
// shape that CUDA refuses (a zero dimension, more than 1024 threads in a block, a grid's y or z above 65535,
// more than 48 KiB of dynamic shared memory) runs nothing: the next cudaGetLastError() returns
// cudaErrorInvalidConfiguration, and the reason goes to standard error with the kernel's name.
void run(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& thread);
// The running block's dynamic shared memory.
void* shared_memory();
// A thread's read or write of the 4-byte words [offset / 4, (offset + bytes) / 4) of it, checked for a race.
void shared_access(size_t offset, size_t bytes, bool write);

// Element i of the block's dynamic shared memory as T: reads and writes go through the race check.
template <class T>
class SharedElement {
  static_assert(sizeof(T) % 4 == 0, "shared memory is checked by 4-byte words");

 public:
  SharedElement(T* base, int64_t i) : base_(base), i_(i) {}
  operator T() const {
    shared_access(offset(), sizeof(T), false);
    return base_[i_];
  }
  SharedElement& operator=(T v) {
    shared_access(offset(), sizeof(T), true);
    base_[i_] = v;
    return *this;
  }
  SharedElement& operator=(const SharedElement& other) { return *this = static_cast<T>(other); }
  SharedElement& operator+=(T v) { return *this = static_cast<T>(*this) + v; }
  SharedElement& operator-=(T v) { return *this = static_cast<T>(*this) - v; }
  SharedElement& operator*=(T v) { return *this = static_cast<T>(*this) * v; }

 private:
  size_t offset() const { return static_cast<size_t>(i_) * sizeof(T); }
  T* base_;
  int64_t i_;
};

// What dynamic_shared<T>() gives a kernel on the host: indexable like the T* it is on the GPU.
template <class T>
class SharedArray {
 public:
  explicit SharedArray(void* base) : base_(static_cast<T*>(base)) {}
  SharedElement<T> operator[](int64_t i) const { return SharedElement<T>(base_, i); }

 private:
  T* base_;
};
// __syncthreads for the running thread.
void sync_threads();

}  // namespace trainrr::host_kernels

inline void __syncthreads() { trainrr::host_kernels::sync_threads(); }

// One thread runs at a time: an atomic is the plain operation.
inline float atomicAdd(float* address, float value) {
  const float old = *address;
  *address = old + value;
  return old;
}

// CUDA's device min and max for integers.
inline int64_t min(int64_t a, int64_t b) { return b < a ? b : a; }
inline int64_t max(int64_t a, int64_t b) { return a < b ? b : a; }

cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);
// "Device" memory is host memory here (under AddressSanitizer, with its red zones).
cudaError_t cudaMalloc(void** pointer, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** pointer, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(pointer), bytes);
}
cudaError_t cudaFree(void* pointer);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaDeviceSynchronize();
