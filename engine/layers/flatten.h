#pragma once
// Flatten: (batch, ...) -> (batch, product of the rest). Row-major, so NHWC flattens as Keras does.

#include <string>

#include "engine/layers/layer.h"

namespace trainrr {

class Flatten : public Layer {
 public:
  explicit Flatten(std::string name);

  std::string type() const override { return "Flatten"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;

 private:
  Shape input_;  // per sample
  Tensor y_;     // the last forward output
  Tensor dx_;    // the last backward's input gradient
  std::string probe_out_, probe_dx_;
};

}  // namespace trainrr
