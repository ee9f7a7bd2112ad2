#pragma once
// MaxPool2D over NHWC input. Forward remembers where each maximum came from; backward sends each output
// gradient there (on ties, the first maximum in row-major window order, as the reference frameworks do).

#include <array>
#include <cstdint>
#include <string>

#include "engine/device_backend.h"
#include "engine/layers/layer.h"
#include "engine/layers/padding.h"

namespace trainrr {

// The layer's arithmetic on the host: y and argmax [n, out_h, out_w, c], argmax counted from each image's
// start; dx [n, h, w, c] (overwritten). Either splits its work over `pool` (may be null) without changing a bit.
void max_pool_forward_host(const PoolGeometry& g, const float* x, float* y, int32_t* argmax, ThreadPool* pool);
void max_pool_backward_host(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx,
                            ThreadPool* pool);

class MaxPool2D : public Layer {
 public:
  MaxPool2D(std::string name, std::array<int64_t, 2> pool_size, std::array<int64_t, 2> strides,
            Padding padding);

  std::string type() const override { return "MaxPool2D"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;

 private:
  std::array<int64_t, 2> pool_size_, strides_;
  Padding padding_;
  int64_t h_ = 0, w_ = 0, c_ = 0, out_h_ = 0, out_w_ = 0, pad_top_ = 0, pad_left_ = 0;
  Shape x_shape_;                // (batch, h, w, c) of the last forward input
  Tensor y_;                     // (batch, out_h, out_w, c): the last forward output
  Tensor dx_;                    // (batch, h, w, c): the last backward's input gradient
  std::vector<int32_t> argmax_;  // (batch, out_h, out_w, c): where each maximum is, from its image's start
  DeviceArray argmax_device_;    // the same, in a run on a device
  PoolGeometry geometry(int64_t batch) const;

  std::string probe_fwd_, probe_bwd_, probe_out_, probe_dx_;
};

}  // namespace trainrr
