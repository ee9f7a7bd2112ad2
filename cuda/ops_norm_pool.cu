// BatchNormalization's elementwise steps and MaxPool2D on the GPU (engine/layers/batch_normalization.cc,
// max_pool2d.cc). Everything here is +, -, *, / and sqrt in the CPU's order, or comparisons: the CPU's bits.

#include <climits>

#include "cuda/ops.h"
#include "cuda/ops_common.cuh"

namespace trainrr::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

__global__ void bn_square_deviations_kernel(const float* x, const float* mean, float* sq, int64_t rows, int64_t c) {
  const int64_t n = rows * c;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float xc = x[i] - mean[i % c];  // the layer stores this deviation, then squares the stored value
    sq[i] = xc * xc;
  }
}

__global__ void bn_statistics_kernel(const float* mean, const float* var, float epsilon, float momentum,
                                     float one_minus_momentum, float* inv_std, float* mm, float* mv, int64_t c) {
  for (int64_t j = first_index(); j < c; j += grid_stride()) {
    inv_std[j] = 1.0f / sqrtf(var[j] + epsilon);
    mm[j] = mm[j] * momentum + mean[j] * one_minus_momentum;
    mv[j] = mv[j] * momentum + var[j] * one_minus_momentum;
  }
}

__global__ void bn_inverse_std_kernel(const float* var, float epsilon, float* inv_std, int64_t c) {
  for (int64_t j = first_index(); j < c; j += grid_stride()) inv_std[j] = 1.0f / sqrtf(var[j] + epsilon);
}

// Training computes x - mean, stores it, then scales the stored value by inv_std; inference computes
// (x - mean) * inv_std in one expression: both round the difference, then the product, so one kernel serves.
__global__ void bn_normalize_kernel(const float* x, const float* mean, const float* inv_std, const float* gamma,
                                    const float* beta, float* xhat, float* y, int64_t rows, int64_t c) {
  const int64_t n = rows * c;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t j = i % c;
    const float xh = (x[i] - mean[j]) * inv_std[j];
    xhat[i] = xh;
    y[i] = xh * gamma[j] + beta[j];
  }
}

__global__ void bn_backward_columns_kernel(const float* dy, const float* xhat, float* scratch, int64_t rows,
                                           int64_t c) {
  const int64_t n = rows * c;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t r = i / c, j = i % c;
    scratch[r * 2 * c + j] = dy[i];
    scratch[r * 2 * c + c + j] = dy[i] * xhat[i];
  }
}

__global__ void bn_backward_data_kernel(const float* dy, const float* xhat, const float* gamma, const float* inv_std,
                                        const float* dbeta, const float* dgamma, bool training, float* dx,
                                        int64_t rows, int64_t c) {
  const int64_t n = rows * c;
  const float m = static_cast<float>(rows), inv_m = 1.0f / m;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t j = i % c;
    if (training)
      dx[i] = gamma[j] * inv_std[j] * inv_m * (m * dy[i] - dbeta[j] - xhat[i] * dgamma[j]);
    else
      dx[i] = dy[i] * gamma[j] * inv_std[j];
  }
}

// One thread per output (n, oy, ox, ch): the window clipped to the input, its cells in row-major order, a later
// cell winning only when strictly greater (ties to the first; a NaN first cell stays), as window_max.
__global__ void max_pool_forward_kernel(PoolGeometry g, const float* x, float* y, int32_t* argmax) {
  const int64_t total = g.n * g.out_h * g.out_w * g.c;
  const int64_t image = g.h * g.w * g.c;
  const int64_t row_len = g.w * g.c;
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t ch = o % g.c;
    const int64_t ox = (o / g.c) % g.out_w;
    const int64_t oy = (o / (g.c * g.out_w)) % g.out_h;
    const int64_t img = o / (g.c * g.out_w * g.out_h);
    const float* xi = x + img * image;
    const int64_t y0 = max(oy * g.stride_h - g.pad_top, int64_t{0});
    const int64_t y1 = min(oy * g.stride_h - g.pad_top + g.pool_h, g.h);
    const int64_t x0 = max(ox * g.stride_w - g.pad_left, int64_t{0});
    const int64_t x1 = min(ox * g.stride_w - g.pad_left + g.pool_w, g.w);
    int64_t at = y0 * row_len + x0 * g.c + ch;
    float best = xi[at];
    for (int64_t iy = y0; iy < y1; ++iy)
      for (int64_t ix = iy == y0 ? x0 + 1 : x0; ix < x1; ++ix) {
        const int64_t cell = iy * row_len + ix * g.c + ch;
        const float v = xi[cell];
        if (v > best) best = v, at = cell;
      }
    y[o] = best;
    argmax[o] = static_cast<int32_t>(at);
  }
}

// One thread per input cell (n, iy, ix, ch): the outputs whose window holds the cell, in increasing output
// order (oy, then ox), add their gradient when their maximum is this cell. The CPU scatters the outputs in that
// same order into zeros, so each cell sees the same additions in the same order.
__global__ void max_pool_backward_kernel(PoolGeometry g, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t total = g.n * g.h * g.w * g.c;
  const int64_t image = g.h * g.w * g.c, outputs = g.out_h * g.out_w * g.c;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t cell = e % image, img = e / image;
    const int64_t ch = cell % g.c, ix = (cell / g.c) % g.w, iy = cell / (g.c * g.w);
    // Output oy's window covers rows [oy * s - pad, oy * s - pad + pool): those holding iy.
    const int64_t ty = iy + g.pad_top, tx = ix + g.pad_left;
    const int64_t oy0 = ty - g.pool_h + 1 > 0 ? (ty - g.pool_h + 1 + g.stride_h - 1) / g.stride_h : 0;
    const int64_t oy1 = min(ty / g.stride_h, g.out_h - 1);
    const int64_t ox0 = tx - g.pool_w + 1 > 0 ? (tx - g.pool_w + 1 + g.stride_w - 1) / g.stride_w : 0;
    const int64_t ox1 = min(tx / g.stride_w, g.out_w - 1);
    const float* dyi = dy + img * outputs;
    const int32_t* ai = argmax + img * outputs;
    float s = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t o = (oy * g.out_w + ox) * g.c + ch;
        if (ai[o] == cell) s += dyi[o];
      }
    dx[e] = s;
  }
}

Status check_rows(const char* op, int64_t rows, int64_t c) {
  if (rows < 0 || c < 0) return detail::bad_argument(op, "negative shape");
  return {};
}

Status check_pool(const char* op, const PoolGeometry& g) {
  if (g.n < 0 || g.h <= 0 || g.w <= 0 || g.c <= 0 || g.pool_h <= 0 || g.pool_w <= 0 || g.stride_h <= 0 ||
      g.stride_w <= 0 || g.out_h < 0 || g.out_w < 0 || g.pad_top < 0 || g.pad_left < 0)
    return detail::bad_argument(op, "invalid pooling geometry");
  if (g.h * g.w * g.c > INT_MAX) return detail::bad_argument(op, "an image is too large for int32 argmax indices");
  return {};
}

}  // namespace

Status batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows, int64_t c,
                                    void* stream) {
  if (Status s = check_rows("batch_norm_square_deviations", rows, c); !s) return s;
  if (rows == 0 || c == 0) return {};
  return detail::launch("bn_square_deviations_kernel", bn_square_deviations_kernel,
                        detail::blocks_for(rows * c), detail::kBlock, 0, stream, x, mean, sq, rows, c);
}

Status batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                             float one_minus_momentum, float* inv_std, float* moving_mean,
                             float* moving_variance, int64_t c, void* stream) {
  if (c < 0) return detail::bad_argument("batch_norm_statistics", "negative channel count");
  if (c == 0) return {};
  return detail::launch("bn_statistics_kernel", bn_statistics_kernel, detail::blocks_for(c), detail::kBlock,
                        0, stream, mean, var, epsilon, momentum, one_minus_momentum, inv_std, moving_mean,
                        moving_variance, c);
}

Status batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c, void* stream) {
  if (c < 0) return detail::bad_argument("batch_norm_inverse_std", "negative channel count");
  if (c == 0) return {};
  return detail::launch("bn_inverse_std_kernel", bn_inverse_std_kernel, detail::blocks_for(c), detail::kBlock,
                        0, stream, variance, epsilon, inv_std, c);
}

Status batch_norm_normalize(const float* x, const float* mean, const float* inv_std, const float* gamma,
                            const float* beta, float* xhat, float* y, int64_t rows, int64_t c, void* stream) {
  if (Status s = check_rows("batch_norm_normalize", rows, c); !s) return s;
  if (rows == 0 || c == 0) return {};
  return detail::launch("bn_normalize_kernel", bn_normalize_kernel, detail::blocks_for(rows * c),
                        detail::kBlock, 0, stream, x, mean, inv_std, gamma, beta, xhat, y, rows, c);
}

Status batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows, int64_t c,
                                   void* stream) {
  if (Status s = check_rows("batch_norm_backward_columns", rows, c); !s) return s;
  if (rows == 0 || c == 0) return {};
  return detail::launch("bn_backward_columns_kernel", bn_backward_columns_kernel,
                        detail::blocks_for(rows * c), detail::kBlock, 0, stream, dy, xhat, scratch, rows, c);
}

Status batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma, const float* inv_std,
                                const float* dbeta, const float* dgamma, bool training, float* dx, int64_t rows,
                                int64_t c, void* stream) {
  if (Status s = check_rows("batch_norm_backward_data", rows, c); !s) return s;
  if (rows == 0 || c == 0) return {};
  return detail::launch("bn_backward_data_kernel", bn_backward_data_kernel, detail::blocks_for(rows * c),
                        detail::kBlock, 0, stream, dy, xhat, gamma, inv_std, dbeta, dgamma, training, dx,
                        rows, c);
}

Status max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax, void* stream) {
  if (Status s = check_pool("max_pool_forward", g); !s) return s;
  const int64_t total = g.n * g.out_h * g.out_w * g.c;
  if (total == 0) return {};
  return detail::launch("max_pool_forward_kernel", max_pool_forward_kernel, detail::blocks_for(total),
                        detail::kBlock, 0, stream, g, x, y, argmax);
}

Status max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx, void* stream) {
  if (Status s = check_pool("max_pool_backward", g); !s) return s;
  const int64_t total = g.n * g.h * g.w * g.c;
  if (total == 0) return {};
  return detail::launch("max_pool_backward_kernel", max_pool_backward_kernel, detail::blocks_for(total),
                        detail::kBlock, 0, stream, g, dy, argmax, dx);
}

}  // namespace trainrr::cuda
