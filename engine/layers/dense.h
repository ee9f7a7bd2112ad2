#pragma once
// Dense: y = activation(x W + b), W in Keras' layout (in, units).

#include <string>

#include "engine/layers/activations.h"
#include "engine/layers/initializers.h"
#include "engine/layers/layer.h"

namespace trainrr {

class Dense : public Layer {
 public:
  Dense(std::string name, int64_t units, Activation activation, Initializer kernel_initializer,
        bool use_bias);

  std::string type() const override { return "Dense"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;
  std::vector<Param*> params() override;

  int64_t units() const { return units_; }
  Activation activation() const { return activation_; }

 private:
  int64_t in_ = 0;
  int64_t units_;
  Activation activation_;
  Initializer kernel_initializer_;
  bool use_bias_;

  Param kernel_;  // (in, units)
  Param bias_;    // (units,); empty without a bias
  Tensor x_;      // (batch, in): the last forward input
  Tensor y_;      // (batch, units): the last forward output
  Tensor dz_;     // (batch, units): gradient before the activation
  Tensor dx_;     // (batch, in): the last backward's input gradient

  // Sites, built once: ops run every step.
  std::string site_fwd_, site_bwd_data_, site_bwd_weight_, site_bias_bwd_;
  std::string probe_fwd_, probe_bias_fwd_, probe_act_fwd_, probe_act_bwd_, probe_bwd_data_, probe_bwd_weight_,
      probe_bias_bwd_, probe_out_, probe_dx_;
};

}  // namespace trainrr
