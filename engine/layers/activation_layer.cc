#include "engine/layers/activation_layer.h"

#include "engine/layers/layer_util.h"

namespace trainrr {

ActivationLayer::ActivationLayer(std::string name, Activation activation)
    : Layer(std::move(name)), activation_(activation) {
  const std::string act = activation_name(activation);
  probe_fwd_ = this->name() + "/" + act + ".fwd:out";
  probe_bwd_ = this->name() + "/" + act + ".bwd:out";
  probe_out_ = this->name() + ":out";
  probe_dx_ = this->name() + ":dx";
}

Result<Shape> ActivationLayer::build(const Shape& input, Runtime& /*rt*/) {
  if (input.empty())
    return Error{name() + " expects input of rank 1 or more per sample, got " + shape_str(input)};
  return input;
}

const Tensor& ActivationLayer::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() >= 2, name() + " got " + shape_str(x.shape));
  const int64_t cols = x.dim(-1);
  place(rt, y_, x.shape);
  op_activation_forward(rt, activation_, at(rt, x), at(rt, y_), x.size() / cols, cols);
  rt.probe(probe_fwd_, Phase::forward, y_, ProbeLevel::op);
  rt.probe_unchanged(probe_out_, Phase::forward, y_, ProbeLevel::layer);
  return y_;
}

const Tensor& ActivationLayer::backward(const Tensor& dy, Runtime& rt) {
  TRAINRR_CHECK(dy.shape == y_.shape, name() + " got dy " + shape_str(dy.shape));
  const int64_t cols = dy.dim(-1);
  if (!needs_input_grad()) return no_input_grad();
  place(rt, dx_, dy.shape);
  Tensor& dx = dx_;
  op_activation_backward(rt, activation_, at(rt, y_), at(rt, dy), at(rt, dx), dy.size() / cols, cols);
  rt.probe(probe_bwd_, Phase::backward, dx, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
