#include "engine/emulated_device.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/counter_rng.h"
#include "engine/layers/layer_util.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/layers/loss.h"
#include "engine/layers/max_pool2d.h"
#include "engine/optimizer.h"
#include "engine/random.h"
#include "engine/runtime.h"

namespace trainrr {

EmulatedDevice::~EmulatedDevice() {
  for (const auto& [start, bytes] : blocks_) std::free(reinterpret_cast<void*>(start));
}

void* EmulatedDevice::allocate(size_t bytes) {
  // 64-byte aligned, as the CPU's kernels may load a cache line at once; filled with NaNs (all bits set), so
  // that a value read before anything wrote it does not pass for a zero.
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw DeviceError("emulated device: out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0xFF, rounded);
  blocks_[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

void EmulatedDevice::release(void* p, size_t bytes) {
  auto it = blocks_.find(reinterpret_cast<uintptr_t>(p));
  if (it == blocks_.end()) throw DeviceError("emulated device: release of memory it did not allocate");
  if (it->second != bytes)
    throw DeviceError("emulated device: release of " + std::to_string(bytes) + " bytes of a block of " +
                      std::to_string(it->second));
  blocks_.erase(it);
  std::free(p);
}

void EmulatedDevice::check(const void* p, size_t bytes, const char* op, const char* what) const {
  if (bytes == 0) return;
  const auto at = reinterpret_cast<uintptr_t>(p);
  auto it = blocks_.upper_bound(at);
  if (it != blocks_.begin()) {
    --it;
    if (at >= it->first && at + bytes <= it->first + it->second) return;
  }
  throw DeviceError(std::string("emulated device: ") + op + ": " + what + " (" + std::to_string(bytes) +
                    " bytes) is not in device memory");
}

void EmulatedDevice::copy(void* dst, const void* src, size_t bytes) {
  check(dst, bytes, "copy", "the destination");
  check(src, bytes, "copy", "the source");
  std::memmove(dst, src, bytes);
}

void EmulatedDevice::upload(void* dst, const void* src, size_t bytes) {
  check(dst, bytes, "upload", "the destination");
  std::memcpy(dst, src, bytes);
  ++uploads_;
}

void EmulatedDevice::download(void* dst, const void* src, size_t bytes) {
  check(src, bytes, "download", "the source");
  std::memcpy(dst, src, bytes);
  ++downloads_;
}

void EmulatedDevice::zero(void* dst, size_t bytes) {
  check(dst, bytes, "zero", "the destination");
  std::memset(dst, 0, bytes);
}

void EmulatedDevice::matmul(Runtime& rt, std::string_view site, const MatmulArgs& a) {
  check_floats(a.a, a.m * a.k, "matmul", "A");
  check_floats(a.b, a.k * a.n, "matmul", "B");
  check_floats(a.c, a.m * a.n, "matmul", "C");
  run_matmul(*rt.kernels, site, a);
}

void EmulatedDevice::column_sums(Runtime& rt, std::string_view site, const ReduceArgs& a) {
  check_floats(a.x, a.rows * a.cols, "column_sums", "x");
  check_floats(a.out, a.cols, "column_sums", "out");
  run_reduce(*rt.kernels, site, a);
}

void EmulatedDevice::conv2d(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& a) {
  const int64_t x = a.n * a.h * a.w * a.c_in, f = a.kh * a.kw * a.c_in * a.c_out,
                y = a.n * a.out_h * a.out_w * a.c_out;
  if (op == OpKind::conv2d_fwd) {
    check_floats(a.x, x, "conv2d", "x"), check_floats(a.filter, f, "conv2d", "the filter");
    check_floats(a.out, y, "conv2d", "y");
  } else if (op == OpKind::conv2d_bwd_data) {
    check_floats(a.filter, f, "conv2d", "the filter"), check_floats(a.dy, y, "conv2d", "dy");
    check_floats(a.out, x, "conv2d", "dx");
  } else {
    check_floats(a.x, x, "conv2d", "x"), check_floats(a.dy, y, "conv2d", "dy");
    check_floats(a.out, f, "conv2d", "dfilter");
  }
  run_conv2d(*rt.kernels, site, op, a);
}

void EmulatedDevice::add_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
  check_floats(y, rows * cols, "add_bias", "y"), check_floats(bias, cols, "add_bias", "the bias");
  trainrr::add_bias(y, bias, rows, cols);
}

void EmulatedDevice::activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols,
                                        MathFamily math) {
  check_floats(x, rows * cols, "activation_forward", "x"), check_floats(y, rows * cols, "activation_forward", "y");
  trainrr::activation_forward(a, x, y, rows, cols, nullptr, math);
}

void EmulatedDevice::activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                                         int64_t cols) {
  const int64_t n = rows * cols;
  check_floats(y, n, "activation_backward", "y"), check_floats(dy, n, "activation_backward", "dy");
  check_floats(dx, n, "activation_backward", "dx");
  trainrr::activation_backward(a, y, dy, dx, rows, cols, nullptr);
}

void EmulatedDevice::bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows,
                                             int64_t cols, MathFamily math) {
  check_floats(y, rows * cols, "bias_activation_forward", "y");
  if (bias) check_floats(bias, cols, "bias_activation_forward", "the bias");
  trainrr::bias_activation_forward(a, bias, y, rows, cols, nullptr, math);
}

void EmulatedDevice::uniform(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) {
  check_floats(out, n, "uniform", "out");
  std::vector<uint32_t> words(static_cast<size_t>(n));
  philox_words(key, offset, words);
  for (int64_t i = 0; i < n; ++i) out[i] = rng::uniform_between(words[i], lo, hi);
}

void EmulatedDevice::dropout(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                             uint8_t* keep, int64_t n) {
  check_floats(x, n, "dropout", "x"), check_floats(y, n, "dropout", "y");
  check(keep, static_cast<size_t>(n), "dropout", "the keep mask");
  std::vector<uint32_t> words(static_cast<size_t>(n));
  philox_words(key, offset, words);
  for (int64_t i = 0; i < n; ++i) {
    keep[i] = rng::dropout_keeps(rng::uniform_between(words[i], 0.0f, 1.0f), rate);
    y[i] = rng::dropout_apply(keep[i], x[i], scale);
  }
}

void EmulatedDevice::dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n) {
  check(keep, static_cast<size_t>(n), "dropout_backward", "the keep mask");
  check_floats(dy, n, "dropout_backward", "dy"), check_floats(dx, n, "dropout_backward", "dx");
  for (int64_t i = 0; i < n; ++i) dx[i] = rng::dropout_apply(keep[i], dy[i], scale);
}

void EmulatedDevice::sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch,
                                                     int64_t k, bool from_logits, bool softmax_output,
                                                     MathFamily math, float* per_sample, float* grad) {
  const char* op = "sparse_categorical_crossentropy";
  check_floats(pred, batch * k, op, "pred"), check_floats(labels, batch, op, "the labels");
  check_floats(per_sample, batch, op, "per_sample"), check_floats(grad, batch * k, op, "grad");
  sparse_categorical_crossentropy_rows(pred, labels, batch, k, from_logits, softmax_output, math, per_sample, grad);
}

void EmulatedDevice::binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                                         MathFamily math, float* per_sample, float* grad) {
  const char* op = "binary_crossentropy";
  check_floats(pred, batch, op, "pred"), check_floats(labels, batch, op, "the labels");
  check_floats(per_sample, batch, op, "per_sample"), check_floats(grad, batch, op, "grad");
  binary_crossentropy_rows(pred, labels, batch, from_logits, math, per_sample, grad);
}

void EmulatedDevice::mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k,
                                        float* per_sample, float* grad) {
  const char* op = "mean_squared_error";
  check_floats(pred, batch * k, op, "pred"), check_floats(targets, batch * k, op, "the targets");
  check_floats(per_sample, batch, op, "per_sample"), check_floats(grad, batch * k, op, "grad");
  mean_squared_error_rows(pred, targets, batch, k, per_sample, grad);
}

void EmulatedDevice::max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax) {
  const int64_t in = g.n * g.h * g.w * g.c, out = g.n * g.out_h * g.out_w * g.c;
  check_floats(x, in, "max_pool_forward", "x"), check_floats(y, out, "max_pool_forward", "y");
  check(argmax, static_cast<size_t>(out) * sizeof(int32_t), "max_pool_forward", "argmax");
  max_pool_forward_host(g, x, y, argmax, nullptr);
}

void EmulatedDevice::max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t in = g.n * g.h * g.w * g.c, out = g.n * g.out_h * g.out_w * g.c;
  check_floats(dy, out, "max_pool_backward", "dy"), check_floats(dx, in, "max_pool_backward", "dx");
  check(argmax, static_cast<size_t>(out) * sizeof(int32_t), "max_pool_backward", "argmax");
  max_pool_backward_host(g, dy, argmax, dx, nullptr);
}

// Batch normalization: the layer's CPU arithmetic (engine/layers/batch_normalization.cc), step by step.

void EmulatedDevice::scale(float* v, int64_t n, float s) {
  check_floats(v, n, "scale", "v");
  for (int64_t i = 0; i < n; ++i) v[i] *= s;
}

void EmulatedDevice::batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows,
                                                  int64_t c) {
  const char* op = "batch_norm_square_deviations";
  check_floats(x, rows * c, op, "x"), check_floats(mean, c, op, "the mean"), check_floats(sq, rows * c, op, "sq");
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const float d = x[i * c + j] - mean[j];
      sq[i * c + j] = d * d;
    }
}

void EmulatedDevice::batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                                           float one_minus_momentum, float* inv_std, float* moving_mean,
                                           float* moving_variance, int64_t c) {
  const char* op = "batch_norm_statistics";
  check_floats(mean, c, op, "the mean"), check_floats(var, c, op, "the variance");
  check_floats(inv_std, c, op, "inv_std"), check_floats(moving_mean, c, op, "the moving mean");
  check_floats(moving_variance, c, op, "the moving variance");
  for (int64_t j = 0; j < c; ++j) {
    inv_std[j] = 1.0f / std::sqrt(var[j] + epsilon);
    moving_mean[j] = moving_mean[j] * momentum + mean[j] * one_minus_momentum;
    moving_variance[j] = moving_variance[j] * momentum + var[j] * one_minus_momentum;
  }
}

void EmulatedDevice::batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c) {
  check_floats(variance, c, "batch_norm_inverse_std", "the variance");
  check_floats(inv_std, c, "batch_norm_inverse_std", "inv_std");
  for (int64_t j = 0; j < c; ++j) inv_std[j] = 1.0f / std::sqrt(variance[j] + epsilon);
}

void EmulatedDevice::batch_norm_normalize(const float* x, const float* mean, const float* inv_std,
                                          const float* gamma, const float* beta, float* xhat, float* y,
                                          int64_t rows, int64_t c) {
  const char* op = "batch_norm_normalize";
  check_floats(x, rows * c, op, "x"), check_floats(mean, c, op, "the mean"), check_floats(inv_std, c, op, "inv_std");
  check_floats(gamma, c, op, "gamma"), check_floats(beta, c, op, "beta");
  check_floats(xhat, rows * c, op, "xhat"), check_floats(y, rows * c, op, "y");
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const float centered = x[i * c + j] - mean[j];
      xhat[i * c + j] = centered * inv_std[j];
      y[i * c + j] = xhat[i * c + j] * gamma[j] + beta[j];
    }
}

void EmulatedDevice::batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows,
                                                 int64_t c) {
  const char* op = "batch_norm_backward_columns";
  check_floats(dy, rows * c, op, "dy"), check_floats(xhat, rows * c, op, "xhat");
  check_floats(scratch, rows * 2 * c, op, "scratch");
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < c; ++j) {
      scratch[i * 2 * c + j] = dy[i * c + j];
      scratch[i * 2 * c + c + j] = dy[i * c + j] * xhat[i * c + j];
    }
}

void EmulatedDevice::batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma,
                                              const float* inv_std, const float* dbeta, const float* dgamma,
                                              bool training, float* dx, int64_t rows, int64_t c) {
  const char* op = "batch_norm_backward_data";
  check_floats(dy, rows * c, op, "dy"), check_floats(xhat, rows * c, op, "xhat"), check_floats(gamma, c, op, "gamma");
  check_floats(inv_std, c, op, "inv_std"), check_floats(dx, rows * c, op, "dx");
  if (training) {
    check_floats(dbeta, c, op, "dbeta"), check_floats(dgamma, c, op, "dgamma");
    const float m = static_cast<float>(rows), inv_m = 1.0f / m;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j)
        dx[i * c + j] = gamma[j] * inv_std[j] * inv_m * (m * dy[i * c + j] - dbeta[j] - xhat[i * c + j] * dgamma[j]);
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j) dx[i * c + j] = dy[i * c + j] * gamma[j] * inv_std[j];
  }
}

void EmulatedDevice::optimizer_update(const OptimizerConfig& config, int64_t t, MathFamily math, float* w,
                                      const float* g, std::span<float* const> slots, int64_t n) {
  check_floats(w, n, "optimizer_update", "the parameter"), check_floats(g, n, "optimizer_update", "the gradient");
  for (float* s : slots) check_floats(s, n, "optimizer_update", "a slot");
  apply_optimizer_update(config, math, t, w, g, slots, n);
}

}  // namespace trainrr
