#pragma once
// Conv2D: NHWC input, filter in Keras' layout (kh, kw, c_in, filters), Keras' valid/same padding.

#include <array>
#include <string>

#include "engine/layers/activations.h"
#include "engine/layers/initializers.h"
#include "engine/layers/layer.h"
#include "engine/layers/padding.h"

namespace trainrr {

class Conv2D : public Layer {
 public:
  Conv2D(std::string name, int64_t filters, std::array<int64_t, 2> kernel_size,
         std::array<int64_t, 2> strides, Padding padding, Activation activation,
         Initializer kernel_initializer, bool use_bias);

  std::string type() const override { return "Conv2D"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;
  std::vector<Param*> params() override;

 private:
  Conv2dArgs args(int64_t batch) const;  // geometry; pointers left null

  int64_t filters_;
  std::array<int64_t, 2> kernel_size_, strides_;
  Padding padding_;
  Activation activation_;
  Initializer kernel_initializer_;
  bool use_bias_;
  int64_t h_ = 0, w_ = 0, c_in_ = 0, out_h_ = 0, out_w_ = 0, pad_top_ = 0, pad_left_ = 0;

  Param kernel_;  // (kh, kw, c_in, filters)
  Param bias_;    // (filters,); empty without a bias
  Tensor x_;      // (batch, h, w, c_in): the last forward input
  Tensor y_;      // (batch, out_h, out_w, filters): the last forward output
  Tensor dz_;     // like y_: gradient before the activation
  Tensor dx_;     // like x_: the last backward's input gradient

  std::string site_fwd_, site_bwd_data_, site_bwd_filter_, site_bias_bwd_;
  std::string probe_fwd_, probe_bias_fwd_, probe_act_fwd_, probe_act_bwd_, probe_bwd_data_, probe_bwd_filter_,
      probe_bias_bwd_, probe_out_, probe_dx_;
};

}  // namespace trainrr
