#pragma once
// Small helpers the layers share.

#include <algorithm>
#include <cstdint>

#include "engine/device_backend.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/layers/activations.h"
#include "engine/runtime.h"
#include "engine/tensor.h"
#include "engine/thread_pool.h"

namespace trainrr {

// dst = src, reusing dst's storage once it has grown to the batch size.
inline void copy_tensor(Tensor& dst, const Tensor& src) {
  dst.shape = src.shape;
  dst.data.assign(src.data.begin(), src.data.end());
}

// Gives t a shape, reusing its storage; the values are unspecified.
inline void reshape_storage(Tensor& t, Shape shape) {
  t.shape = std::move(shape);
  t.data.resize(shape_size(t.shape));
}

// Elementwise and row-wise loops over a [rows, cols] block run in tasks of whole rows, about
// kChunkElements elements each. Every element is written by one task alone, so the split never changes a
// bit. Blocks under kParallelElements stay on the calling thread: waking the pool costs more than it saves.
constexpr int64_t kChunkElements = 32768;
constexpr int64_t kParallelElements = 131072;

// Calls fn(r0, r1) over row ranges covering [0, rows).
template <class F>
void for_row_chunks(ThreadPool* pool, int64_t rows, int64_t cols, const F& fn) {
  if (rows <= 0) return;
  if (!pool || pool->threads() == 1 || rows * cols < kParallelElements) return fn(int64_t{0}, rows);
  const int64_t per_task = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(cols, 1));
  const int64_t tasks = (rows + per_task - 1) / per_task;
  pool->parallel_for(tasks, [&](int64_t t, int) { fn(t * per_task, std::min(rows, (t + 1) * per_task)); });
}

// The same over a flat range of n elements: fn(i0, i1).
template <class F>
void for_element_chunks(ThreadPool* pool, int64_t n, const F& fn) {
  for_row_chunks(pool, n, 1, fn);
}

// y[r, j] += b[j] over rows [r0, r1) of a [rows, cols] block.
inline void add_bias_rows(float* y, const float* b, int64_t r0, int64_t r1, int64_t cols) {
  const float* __restrict bias = b;
  for (int64_t r = r0; r < r1; ++r) {
    float* __restrict yr = y + r * cols;
    for (int64_t j = 0; j < cols; ++j) yr[j] += bias[j];
  }
}

// y[r, j] += b[j] over a [rows, cols] block.
inline void add_bias(float* y, const float* b, int64_t rows, int64_t cols, ThreadPool* pool = nullptr) {
  for_row_chunks(pool, rows, cols, [&](int64_t r0, int64_t r1) { add_bias_rows(y, b, r0, r1, cols); });
}

// ---- One code path for the CPU and a device: where a run on a device keeps a tensor's values (device memory)
// and which implementation of an op runs (the device backend's, or the CPU's). On the CPU each is the call the
// layers made before there were devices, unchanged.

// The values an op reads and writes.
inline float* at(Runtime& rt, Tensor& t) { return rt.device ? t.dptr() : t.ptr(); }
inline const float* at(Runtime& rt, const Tensor& t) { return rt.device ? t.dptr() : t.ptr(); }
// t shaped `shape`, its storage reused; the values are unspecified.
inline void place(Runtime& rt, Tensor& t, Shape shape) {
  if (rt.device)
    device_reshape(*rt.device, t, std::move(shape));
  else
    reshape_storage(t, std::move(shape));
}
// dst = src.
inline void copy_in(Runtime& rt, Tensor& dst, const Tensor& src) {
  if (rt.device)
    device_copy(*rt.device, dst, src);
  else
    copy_tensor(dst, src);
}
inline void op_matmul(Runtime& rt, std::string_view site, const MatmulArgs& a) {
  if (rt.device)
    rt.device->matmul(rt, site, a);
  else
    run_matmul(*rt.kernels, site, a);
}
inline void op_reduce(Runtime& rt, std::string_view site, const ReduceArgs& a) {
  if (rt.device)
    rt.device->column_sums(rt, site, a);
  else
    run_reduce(*rt.kernels, site, a);
}
inline void op_conv2d(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& a) {
  if (rt.device)
    rt.device->conv2d(rt, site, op, a);
  else
    run_conv2d(*rt.kernels, site, op, a);
}
inline void op_add_bias(Runtime& rt, float* y, const float* b, int64_t rows, int64_t cols) {
  if (rt.device)
    rt.device->add_bias(y, b, rows, cols);
  else
    add_bias(y, b, rows, cols, &rt.pool());
}
inline void op_activation_forward(Runtime& rt, Activation a, const float* x, float* y, int64_t rows, int64_t cols) {
  if (rt.device)
    rt.device->activation_forward(a, x, y, rows, cols, rt.math);
  else
    activation_forward(a, x, y, rows, cols, &rt.pool(), rt.math);
}
inline void op_activation_backward(Runtime& rt, Activation a, const float* y, const float* dy, float* dx,
                                   int64_t rows, int64_t cols) {
  if (rt.device)
    rt.device->activation_backward(a, y, dy, dx, rows, cols);
  else
    activation_backward(a, y, dy, dx, rows, cols, &rt.pool());
}
inline void op_bias_activation_forward(Runtime& rt, Activation a, const float* b, float* y, int64_t rows,
                                       int64_t cols) {
  if (rt.device)
    rt.device->bias_activation_forward(a, b, y, rows, cols, rt.math);
  else
    bias_activation_forward(a, b, y, rows, cols, &rt.pool(), rt.math);
}

}  // namespace trainrr
