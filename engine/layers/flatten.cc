#include "engine/layers/flatten.h"

#include "engine/layers/layer_util.h"

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

const Tensor& Flatten::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == static_cast<int>(input_.size()) + 1 && x.size() == x.dim(0) * shape_size(input_),
                name() + " got " + shape_str(x.shape));
  copy_in(rt, y_, x);
  y_.shape = {x.dim(0), shape_size(input_)};
  const Tensor& y = y_;
  rt.probe(probe_out_, Phase::forward, y, ProbeLevel::layer);
  return y;
}

const Tensor& Flatten::backward(const Tensor& dy, Runtime& rt) {
  Shape s{dy.dim(0)};
  s.insert(s.end(), input_.begin(), input_.end());
  if (!needs_input_grad()) return no_input_grad();
  TRAINRR_CHECK(shape_size(s) == dy.size(), name() + " got dy " + shape_str(dy.shape));
  copy_in(rt, dx_, dy);
  dx_.shape = std::move(s);
  const Tensor& dx = dx_;
  rt.probe(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
