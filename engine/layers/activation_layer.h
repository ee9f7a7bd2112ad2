#pragma once
// Activation: an activation applied on its own (softmax over the last dimension).

#include <string>

#include "engine/layers/activations.h"
#include "engine/layers/layer.h"

namespace trainrr {

class ActivationLayer : public Layer {
 public:
  ActivationLayer(std::string name, Activation activation);

  std::string type() const override { return "Activation"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;

  Activation activation() const { return activation_; }

 private:
  Activation activation_;
  Tensor y_;   // the last forward output
  Tensor dx_;  // the last backward's input gradient
  std::string probe_fwd_, probe_bwd_, probe_out_, probe_dx_;
};

}  // namespace trainrr
