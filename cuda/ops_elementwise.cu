// Bias, activations, dropout's backward and scaling: engine/layers/activations.cc and layer_util.h on the GPU.
// Each expression is the CPU's, operation for operation (the build's --fmad=false keeps products rounded).

#include "cuda/ops.h"
#include "cuda/ops_common.cuh"
#include "engine/counter_rng.h"

namespace trainrr::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] += bias[i % cols];
}

// One element of an elementwise activation. Sigmoid: exp(-x) overflows to inf for very negative x, which
// still gives the right limit 0, as on the CPU.
__device__ inline float activate(Activation a, float x) {
  switch (a) {
    case Activation::relu:
      return x > 0.0f ? x : 0.0f;  // NaN gives 0, as the CPU's comparison
    case Activation::sigmoid:
      return 1.0f / (1.0f + expf(-x));
    case Activation::tanh:
      return tanhf(x);
    default:  // linear (softmax is row-wise and never reaches here)
      return x;
  }
}

__global__ void activation_kernel(Activation a, const float* x, float* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = activate(a, x[i]);
}

// bias may be null.
__global__ void bias_activation_kernel(Activation a, const float* bias, float* y, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    float v = y[i];
    if (bias) v += bias[i % cols];  // rounded to float before the activation, as add_bias stores it
    y[i] = activate(a, v);
  }
}

// One thread per row, the CPU's loops: the first maximum (std::max_element's comparison), then the exps
// added in column order, then one reciprocal. A row split over threads would add the exps in another order.
__global__ void softmax_rows_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = first_index(); r < rows; r += grid_stride()) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = xr[0];
    for (int64_t j = 1; j < cols; ++j)
      if (m < xr[j]) m = xr[j];
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      yr[j] = expf(xr[j] - m);
      sum += yr[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
  }
}

__global__ void activation_grad_kernel(Activation a, const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float d = dy[i], v = y[i];
    switch (a) {
      case Activation::relu:
        dx[i] = v > 0.0f ? d : 0.0f;
        break;
      case Activation::sigmoid:
        dx[i] = d * v * (1.0f - v);
        break;
      case Activation::tanh:
        dx[i] = d * (1.0f - v * v);
        break;
      default:  // linear
        dx[i] = d;
        break;
    }
  }
}

// dx_j = y_j * (dy_j - sum_k dy_k y_k), one thread per row so the dot product is added in column order.
__global__ void softmax_grad_rows_kernel(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  for (int64_t r = first_index(); r < rows; r += grid_stride()) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    float dot = 0.0f;
    for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
    for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
  }
}

__global__ void dropout_backward_kernel(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = rng::dropout_apply(keep[i] != 0, dy[i], scale);
}

__global__ void scale_kernel(float* v, int64_t n, float s) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) v[i] *= s;
}

Status check_block(const char* op, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return detail::bad_argument(op, "negative shape");
  return {};
}

Status softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, void* stream) {
  return detail::launch("softmax_rows_kernel", softmax_rows_kernel, detail::blocks_for(rows), detail::kBlock,
                        0, stream, x, y, rows, cols);
}

}  // namespace

Status add_bias(float* y, const float* bias, int64_t rows, int64_t cols, void* stream) {
  if (Status s = check_block("add_bias", rows, cols); !s) return s;
  if (rows == 0 || cols == 0) return {};
  return detail::launch("add_bias_kernel", add_bias_kernel, detail::blocks_for(rows * cols), detail::kBlock,
                        0, stream, y, bias, rows, cols);
}

Status activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols, void* stream) {
  if (Status s = check_block("activation_forward", rows, cols); !s) return s;
  if (rows == 0 || cols == 0) return {};
  if (a == Activation::softmax) return softmax_forward(x, y, rows, cols, stream);
  if (a == Activation::linear && x == y) return {};
  const int64_t n = rows * cols;
  return detail::launch("activation_kernel", activation_kernel, detail::blocks_for(n), detail::kBlock, 0,
                        stream, a, x, y, n);
}

Status activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                           void* stream) {
  if (Status s = check_block("activation_backward", rows, cols); !s) return s;
  if (rows == 0 || cols == 0) return {};
  if (a == Activation::softmax) {
    return detail::launch("softmax_grad_rows_kernel", softmax_grad_rows_kernel, detail::blocks_for(rows),
                          detail::kBlock, 0, stream, y, dy, dx, rows, cols);
  }
  if (a == Activation::linear && dy == dx) return {};
  const int64_t n = rows * cols;
  return detail::launch("activation_grad_kernel", activation_grad_kernel, detail::blocks_for(n),
                        detail::kBlock, 0, stream, a, y, dy, dx, n);
}

Status bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                               void* stream) {
  if (Status s = check_block("bias_activation_forward", rows, cols); !s) return s;
  if (rows == 0 || cols == 0) return {};
  if (a == Activation::softmax) {  // row-wise: the bias first, as the CPU's block loop does
    if (bias)
      if (Status s = add_bias(y, bias, rows, cols, stream); !s) return s;
    return softmax_forward(y, y, rows, cols, stream);
  }
  if (a == Activation::linear && !bias) return {};
  return detail::launch("bias_activation_kernel", bias_activation_kernel, detail::blocks_for(rows * cols),
                        detail::kBlock, 0, stream, a, bias, y, rows, cols);
}

Status dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n, void* stream) {
  if (n < 0) return detail::bad_argument("dropout_backward", "negative size");
  if (n == 0) return {};
  return detail::launch("dropout_backward_kernel", dropout_backward_kernel, detail::blocks_for(n),
                        detail::kBlock, 0, stream, keep, scale, dy, dx, n);
}

Status scale(float* v, int64_t n, float s, void* stream) {
  if (n < 0) return detail::bad_argument("scale", "negative size");
  if (n == 0) return {};
  return detail::launch("scale_kernel", scale_kernel, detail::blocks_for(n), detail::kBlock, 0, stream, v, n,
                        s);
}

}  // namespace trainrr::cuda
