#pragma once
// A device the engine trains on: its memory and its ops, on device pointers. The layers, losses and the
// optimizer keep their tensors' values in device memory (Tensor::device) during a run on a device and call
// these ops; the trainer uploads each batch and reads back what the host needs (the loss, the predictions for
// the accuracy, the probes, the step's parameters and gradients, checkpoints).
//
// The ops mirror cuda/ops.h: the same arithmetic as the CPU's layers, in the same order. Three of them are
// kernel sites, where the backend makes (and reports through the hooks) the choice of kernel: matmul,
// column_sums and conv2d. Every op may throw DeviceError; Training::fit reports it as the run's error.
//
// Two backends: the CUDA device (cuda/engine_device.h) and the emulated device (engine/emulated_device.h), which
// keeps "device" memory in host allocations of its own and computes with the CPU's kernels. A run on the
// emulated device gives the CPU run's bits when every upload, download and placement is where it should be:
// that is what it is for.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/config.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/layers/activations.h"
#include "engine/portable_math.h"
#include "engine/tensor.h"

namespace trainrr {

struct Runtime;

class DeviceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// MaxPool2D's geometry, NHWC (the layer's window_1d).
struct PoolGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t pool_h = 1, pool_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, out_h = 0, out_w = 0;
};

class DeviceBackend : public DeviceMemory {
 public:
  virtual ~DeviceBackend() = default;

  // "cuda:0 (NVIDIA H200)", "emulated".
  virtual std::string describe() const = 0;
  // What a trace's environment records of the device (gpu.*, cuda.*, lib.*, the CUDA numerics variables).
  virtual std::vector<std::pair<std::string, std::string>> environment() const { return {}; }
  // Whether the device can compute with `math` (the portable family needs trainrr's own exp, log and tanh).
  virtual Status supports(MathFamily math) const {
    (void)math;
    return {};
  }
  // What a replay should say about the device's choices: a forced algorithm that could not run here, say.
  virtual std::vector<std::string> device_notes() const { return {}; }

  // Host to device and back. upload returns once `src` may be reused; download waits for the work queued
  // before it.
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  // Waits for every op queued so far (and reports an error of one of them).
  virtual void synchronize() = 0;

  // ---- Kernel sites: the backend selects the kernel at `site` (once per site) and reports the choice.
  virtual void matmul(Runtime& rt, std::string_view site, const MatmulArgs& args) = 0;
  // ReduceArgs::order is not used on a device.
  virtual void column_sums(Runtime& rt, std::string_view site, const ReduceArgs& args) = 0;
  virtual void conv2d(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& args) = 0;

  // ---- Bias and activations over a row-major [rows, cols] block (engine/layers/activations.h).
  virtual void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) = 0;
  virtual void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols,
                                  MathFamily math) = 0;
  virtual void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                                   int64_t cols) = 0;
  // y = a(y + bias); bias may be null.
  virtual void bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                                       MathFamily math) = 0;

  // ---- Randomness: word `offset + i` of the Philox stream with `key` (engine/counter_rng.h).
  virtual void uniform(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) = 0;
  // keep[i] = uniform(offset + i) >= rate; y[i] = keep ? x[i] * scale : 0.
  virtual void dropout(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                       uint8_t* keep, int64_t n) = 0;
  virtual void dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n) = 0;

  // ---- Losses: per-sample loss and d loss / d pred (engine/layers/loss.cc); labels on the device.
  virtual void sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch, int64_t k,
                                               bool from_logits, bool softmax_output, MathFamily math,
                                               float* per_sample, float* grad) = 0;
  virtual void binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                                   MathFamily math, float* per_sample, float* grad) = 0;
  virtual void mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k,
                                  float* per_sample, float* grad) = 0;

  // ---- MaxPool2D: argmax indexes each image from its start.
  virtual void max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax) = 0;
  virtual void max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx) = 0;

  // ---- BatchNormalization over [rows, c] (the steps of cuda/ops.h).
  virtual void scale(float* v, int64_t n, float s) = 0;
  virtual void batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows,
                                            int64_t c) = 0;
  virtual void batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                                     float one_minus_momentum, float* inv_std, float* moving_mean,
                                     float* moving_variance, int64_t c) = 0;
  virtual void batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c) = 0;
  virtual void batch_norm_normalize(const float* x, const float* mean, const float* inv_std, const float* gamma,
                                    const float* beta, float* xhat, float* y, int64_t rows, int64_t c) = 0;
  virtual void batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows,
                                           int64_t c) = 0;
  virtual void batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma,
                                        const float* inv_std, const float* dbeta, const float* dgamma,
                                        bool training, float* dx, int64_t rows, int64_t c) = 0;

  // ---- One optimizer update of a parameter of n values at the 1-based iteration t; `slots` in the
  // optimizer's slot order (engine/optimizer.h).
  virtual void optimizer_update(const OptimizerConfig& config, int64_t t, MathFamily math, float* w,
                                const float* g, std::span<float* const> slots, int64_t n) = 0;
};

// ---- Placing tensors. Each throws DeviceError from the backend.

// t shaped `shape` with device storage for it (reused while large enough); values unspecified.
void device_reshape(DeviceBackend& d, Tensor& t, Shape shape);
// dst = src, both on the device.
void device_copy(DeviceBackend& d, Tensor& dst, const Tensor& src);
// t's host values copied into its device storage (made for it).
void to_device(DeviceBackend& d, Tensor& t);
// t's device values copied into its host storage (`data`), which is resized for them.
void to_host(DeviceBackend& d, Tensor& t);
// A device tensor's values into `host` (shaped like it), for probes.
void download_into(DeviceBackend& d, const Tensor& t, Tensor& host);

}  // namespace trainrr
