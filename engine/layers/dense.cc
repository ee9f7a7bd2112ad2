#include "engine/layers/dense.h"

#include "engine/layers/layer_util.h"

namespace trainrr {

Dense::Dense(std::string name, int64_t units, Activation activation, Initializer kernel_initializer,
             bool use_bias)
    : Layer(std::move(name)),
      units_(units),
      activation_(activation),
      kernel_initializer_(kernel_initializer),
      use_bias_(use_bias) {
  const std::string& n = this->name();
  const std::string act = activation_name(activation);
  site_fwd_ = n + "/matmul.fwd";
  site_bwd_data_ = n + "/matmul.bwd_data";
  site_bwd_weight_ = n + "/matmul.bwd_weight";
  site_bias_bwd_ = n + "/bias.bwd";
  probe_fwd_ = site_fwd_ + ":out";
  probe_bias_fwd_ = n + "/bias.fwd:out";
  probe_act_fwd_ = n + "/" + act + ".fwd:out";
  probe_act_bwd_ = n + "/" + act + ".bwd:out";
  probe_bwd_data_ = site_bwd_data_ + ":out";
  probe_bwd_weight_ = site_bwd_weight_ + ":out";
  probe_bias_bwd_ = site_bias_bwd_ + ":out";
  probe_out_ = n + ":out";
  probe_dx_ = n + ":dx";
}

Result<Shape> Dense::build(const Shape& input, Runtime& rt) {
  if (input.size() != 1)
    return Error{name() + " expects input of rank 1 per sample, got " + shape_str(input) +
                 (input.size() > 1 ? "; add a Flatten layer" : "")};
  if (input[0] <= 0) return Error{name() + " expects a non-empty input, got " + shape_str(input)};
  in_ = input[0];
  if (Status s = rt.claim_params(name(), Runtime::values_of({in_ + 1, units_})); !s) return s.error();
  kernel_.name = name() + ".kernel";
  kernel_.value = Tensor({in_, units_});
  kernel_.grad = Tensor({in_, units_});
  initialize(kernel_initializer_, kernel_.name, in_, units_, kernel_.value, *rt.rng);
  if (use_bias_) {
    bias_.name = name() + ".bias";
    bias_.value = Tensor({units_});
    bias_.grad = Tensor({units_});
  }
  return Shape{units_};
}

std::vector<Param*> Dense::params() {
  if (use_bias_) return {&kernel_, &bias_};
  return {&kernel_};
}

const Tensor& Dense::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == 2 && x.dim(1) == in_, name() + " got " + shape_str(x.shape));
  const int64_t batch = x.dim(0);
  copy_in(rt, x_, x);
  place(rt, y_, {batch, units_});

  MatmulArgs mm;
  mm.m = batch, mm.n = units_, mm.k = in_;
  mm.a = at(rt, x), mm.b = at(rt, kernel_.value), mm.c = at(rt, y_);
  op_matmul(rt, site_fwd_, mm);
  rt.probe(probe_fwd_, Phase::forward, y_, ProbeLevel::op);

  if (!rt.probes(ProbeLevel::op)) {
    // Nobody looks between the two ops: one pass over y does both, with the same bits.
    op_bias_activation_forward(rt, activation_, use_bias_ ? at(rt, bias_.value) : nullptr, at(rt, y_), batch, units_);
  } else {
    if (use_bias_) {
      op_add_bias(rt, at(rt, y_), at(rt, bias_.value), batch, units_);
      rt.probe(probe_bias_fwd_, Phase::forward, y_, ProbeLevel::op);
    }
    if (activation_ != Activation::linear) {
      op_activation_forward(rt, activation_, at(rt, y_), at(rt, y_), batch, units_);
      rt.probe(probe_act_fwd_, Phase::forward, y_, ProbeLevel::op);
    }
  }
  rt.probe_unchanged(probe_out_, Phase::forward, y_, ProbeLevel::layer);
  return y_;
}

const Tensor& Dense::backward(const Tensor& dy, Runtime& rt) {
  TRAINRR_CHECK(dy.shape == y_.shape, name() + " got dy " + shape_str(dy.shape));
  const int64_t batch = dy.dim(0);

  // dz: the gradient at the matmul-plus-bias output.
  const Tensor* dz = &dy;
  if (activation_ != Activation::linear) {
    place(rt, dz_, dy.shape);
    op_activation_backward(rt, activation_, at(rt, y_), at(rt, dy), at(rt, dz_), batch, units_);
    rt.probe(probe_act_bwd_, Phase::backward, dz_, ProbeLevel::op);
    dz = &dz_;
  }

  if (use_bias_) {
    ReduceArgs r;
    r.x = at(rt, *dz), r.rows = batch, r.cols = units_, r.out = at(rt, bias_.grad);
    op_reduce(rt, site_bias_bwd_, r);
    rt.probe(probe_bias_bwd_, Phase::backward, bias_.grad, ProbeLevel::op);
  }

  MatmulArgs dw;  // dW (in, units) = x^T (in, batch) dz (batch, units)
  dw.trans_a = true;
  dw.m = in_, dw.n = units_, dw.k = batch;
  dw.a = at(rt, x_), dw.b = at(rt, *dz), dw.c = at(rt, kernel_.grad);
  op_matmul(rt, site_bwd_weight_, dw);
  rt.probe(probe_bwd_weight_, Phase::backward, kernel_.grad, ProbeLevel::op);

  if (!needs_input_grad()) return no_input_grad();
  place(rt, dx_, {batch, in_});  // the product overwrites it
  Tensor& dx = dx_;
  MatmulArgs dd;  // dx (batch, in) = dz (batch, units) W^T (units, in)
  dd.trans_b = true;
  dd.m = batch, dd.n = in_, dd.k = units_;
  dd.a = at(rt, *dz), dd.b = at(rt, kernel_.value), dd.c = at(rt, dx);
  op_matmul(rt, site_bwd_data_, dd);
  rt.probe(probe_bwd_data_, Phase::backward, dx, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
