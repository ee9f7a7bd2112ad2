#include "engine/layers/flatten.h"

namespace trainrr {

Flatten::Flatten(std::string name) : Layer(std::move(name)) {
  probe_out_ = this->name() + ":out";
  probe_dx_ = this->name() + ":dx";
}

Result<Shape> Flatten::build(const Shape& input, Runtime& /*rt*/) {
  if (input.empty())
    return Error{name() + " expects input of rank 1 or more per sample, got " + shape_str(input)};
  input_ = input;
  return Shape{shape_size(input)};
}

Tensor Flatten::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == static_cast<int>(input_.size()) + 1, name() + " got " + shape_str(x.shape));
  Tensor y = x.reshaped({x.dim(0), shape_size(input_)});
  rt.probe(probe_out_, Phase::forward, y, ProbeLevel::layer);
  return y;
}

Tensor Flatten::backward(const Tensor& dy, Runtime& rt) {
  Shape s{dy.dim(0)};
  s.insert(s.end(), input_.begin(), input_.end());
  Tensor dx = dy.reshaped(std::move(s));
  rt.probe(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
