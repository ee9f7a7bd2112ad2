#pragma once
// The emulated device: a DeviceBackend whose "device memory" is host memory of its own, separate from every
// Tensor's `data`, and whose ops are the CPU's. A run on it takes the CPU run's kernel choices and gives its
// bits, provided the engine uploads, downloads and places every tensor where it should: a value read from
// host storage that a device run never wrote, or a host pointer passed to a device op, shows up as a
// difference or as an error. Tests use it to check the engine's device path on a machine without a GPU.
//
// Every op checks that each pointer it is given lies inside one live allocation of this device, for as many
// bytes as the op touches; a pointer that does not is a DeviceError naming the op and the argument.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "engine/device_backend.h"

namespace trainrr {

class EmulatedDevice : public DeviceBackend {
 public:
  EmulatedDevice() = default;
  ~EmulatedDevice() override;
  EmulatedDevice(const EmulatedDevice&) = delete;
  EmulatedDevice& operator=(const EmulatedDevice&) = delete;

  std::string describe() const override { return "emulated"; }

  // Counts, for tests.
  size_t live_allocations() const { return blocks_.size(); }
  uint64_t uploads() const { return uploads_; }
  uint64_t downloads() const { return downloads_; }

  void* allocate(size_t bytes) override;
  void release(void* p, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void upload(void* dst, const void* src, size_t bytes) override;
  void download(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void synchronize() override {}

  void matmul(Runtime& rt, std::string_view site, const MatmulArgs& args) override;
  void column_sums(Runtime& rt, std::string_view site, const ReduceArgs& args) override;
  void conv2d(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& args) override;

  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override;
  void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols,
                          MathFamily math) override;
  void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                           int64_t cols) override;
  void bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                               MathFamily math) override;

  void uniform(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) override;
  void dropout(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y, uint8_t* keep,
               int64_t n) override;
  void dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n) override;

  void sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch, int64_t k,
                                       bool from_logits, bool softmax_output, MathFamily math, float* per_sample,
                                       float* grad) override;
  void binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                           MathFamily math, float* per_sample, float* grad) override;
  void mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k, float* per_sample,
                          float* grad) override;

  void max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax) override;
  void max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx) override;

  void scale(float* v, int64_t n, float s) override;
  void batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows,
                                    int64_t c) override;
  void batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                             float one_minus_momentum, float* inv_std, float* moving_mean, float* moving_variance,
                             int64_t c) override;
  void batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c) override;
  void batch_norm_normalize(const float* x, const float* mean, const float* inv_std, const float* gamma,
                            const float* beta, float* xhat, float* y, int64_t rows, int64_t c) override;
  void batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows,
                                   int64_t c) override;
  void batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma, const float* inv_std,
                                const float* dbeta, const float* dgamma, bool training, float* dx, int64_t rows,
                                int64_t c) override;

  void optimizer_update(const OptimizerConfig& config, int64_t t, MathFamily math, float* w, const float* g,
                        std::span<float* const> slots, int64_t n) override;

 private:
  // Throws unless [p, p + bytes) lies inside one live allocation.
  void check(const void* p, size_t bytes, const char* op, const char* what) const;
  void check_floats(const float* p, int64_t n, const char* op, const char* what) const {
    check(p, static_cast<size_t>(n) * sizeof(float), op, what);
  }

  std::map<uintptr_t, size_t> blocks_;  // start -> bytes
  uint64_t uploads_ = 0, downloads_ = 0;
};

}  // namespace trainrr
