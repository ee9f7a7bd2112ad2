#include "engine/layers/conv2d.h"

#include "engine/layers/layer_util.h"

namespace trainrr {

Conv2D::Conv2D(std::string name, int64_t filters, std::array<int64_t, 2> kernel_size,
               std::array<int64_t, 2> strides, Padding padding, Activation activation,
               Initializer kernel_initializer, bool use_bias)
    : Layer(std::move(name)),
      filters_(filters),
      kernel_size_(kernel_size),
      strides_(strides),
      padding_(padding),
      activation_(activation),
      kernel_initializer_(kernel_initializer),
      use_bias_(use_bias) {
  const std::string& n = this->name();
  const std::string act = activation_name(activation);
  site_fwd_ = n + "/conv2d.fwd";
  site_bwd_data_ = n + "/conv2d.bwd_data";
  site_bwd_filter_ = n + "/conv2d.bwd_filter";
  site_bias_bwd_ = n + "/bias.bwd";
  probe_fwd_ = site_fwd_ + ":out";
  probe_bias_fwd_ = n + "/bias.fwd:out";
  probe_act_fwd_ = n + "/" + act + ".fwd:out";
  probe_act_bwd_ = n + "/" + act + ".bwd:out";
  probe_bwd_data_ = site_bwd_data_ + ":out";
  probe_bwd_filter_ = site_bwd_filter_ + ":out";
  probe_bias_bwd_ = site_bias_bwd_ + ":out";
  probe_out_ = n + ":out";
  probe_dx_ = n + ":dx";
}

Result<Shape> Conv2D::build(const Shape& input, Runtime& rt) {
  if (input.size() != 3)
    return Error{name() + " expects input of rank 3 per sample (height, width, channels), got " +
                 shape_str(input)};
  for (int64_t d : input)
    if (d <= 0) return Error{name() + " expects a non-empty input, got " + shape_str(input)};
  const int64_t kh = kernel_size_[0], kw = kernel_size_[1];
  // With "same" padding Keras accepts a kernel larger than the input (the padding covers it).
  if (padding_ == Padding::valid && (kh > input[0] || kw > input[1]))
    return Error{name() + ": kernel " + shape_str({kh, kw}) + " is larger than its input " +
                 shape_str(input) + " with padding 'valid'"};
  h_ = input[0], w_ = input[1], c_in_ = input[2];
  const Window1d wy = window_1d(h_, kh, strides_[0], padding_);
  const Window1d wx = window_1d(w_, kw, strides_[1], padding_);
  out_h_ = wy.out, out_w_ = wx.out, pad_top_ = wy.pad_before, pad_left_ = wx.pad_before;

  const int64_t fan_in = Runtime::values_of({kh, kw, c_in_});
  if (Status s = rt.claim_params(name(), Runtime::values_of({fan_in < 0 ? -1 : fan_in + 1, filters_})); !s)
    return s.error();
  kernel_.name = name() + ".kernel";
  kernel_.value = Tensor({kh, kw, c_in_, filters_});
  kernel_.grad = Tensor(kernel_.value.shape);
  initialize(kernel_initializer_, kernel_.name, kh * kw * c_in_, kh * kw * filters_, kernel_.value, *rt.rng);
  if (use_bias_) {
    bias_.name = name() + ".bias";
    bias_.value = Tensor({filters_});
    bias_.grad = Tensor({filters_});
  }
  return Shape{out_h_, out_w_, filters_};
}

std::vector<Param*> Conv2D::params() {
  if (use_bias_) return {&kernel_, &bias_};
  return {&kernel_};
}

Conv2dArgs Conv2D::args(int64_t batch) const {
  Conv2dArgs a;
  a.n = batch, a.h = h_, a.w = w_, a.c_in = c_in_;
  a.kh = kernel_size_[0], a.kw = kernel_size_[1], a.c_out = filters_;
  a.stride_h = strides_[0], a.stride_w = strides_[1], a.pad_top = pad_top_, a.pad_left = pad_left_;
  a.out_h = out_h_, a.out_w = out_w_;
  return a;
}

const Tensor& Conv2D::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == 4 && x.dim(1) == h_ && x.dim(2) == w_ && x.dim(3) == c_in_,
                name() + " got " + shape_str(x.shape));
  const int64_t batch = x.dim(0);
  const int64_t rows = batch * out_h_ * out_w_;
  copy_in(rt, x_, x);
  place(rt, y_, {batch, out_h_, out_w_, filters_});

  Conv2dArgs a = args(batch);
  a.x = at(rt, x), a.filter = at(rt, kernel_.value), a.out = at(rt, y_);
  op_conv2d(rt, site_fwd_, OpKind::conv2d_fwd, a);
  rt.probe(probe_fwd_, Phase::forward, y_, ProbeLevel::op);

  if (!rt.probes(ProbeLevel::op)) {
    // Nobody looks between the two ops: one pass over y does both, with the same bits.
    op_bias_activation_forward(rt, activation_, use_bias_ ? at(rt, bias_.value) : nullptr, at(rt, y_), rows, filters_);
  } else {
    if (use_bias_) {
      op_add_bias(rt, at(rt, y_), at(rt, bias_.value), rows, filters_);
      rt.probe(probe_bias_fwd_, Phase::forward, y_, ProbeLevel::op);
    }
    if (activation_ != Activation::linear) {
      op_activation_forward(rt, activation_, at(rt, y_), at(rt, y_), rows, filters_);
      rt.probe(probe_act_fwd_, Phase::forward, y_, ProbeLevel::op);
    }
  }
  rt.probe_unchanged(probe_out_, Phase::forward, y_, ProbeLevel::layer);
  return y_;
}

const Tensor& Conv2D::backward(const Tensor& dy, Runtime& rt) {
  TRAINRR_CHECK(dy.shape == y_.shape, name() + " got dy " + shape_str(dy.shape));
  const int64_t batch = dy.dim(0);
  const int64_t rows = batch * out_h_ * out_w_;

  const Tensor* dz = &dy;
  if (activation_ != Activation::linear) {
    place(rt, dz_, dy.shape);
    op_activation_backward(rt, activation_, at(rt, y_), at(rt, dy), at(rt, dz_), rows, filters_);
    rt.probe(probe_act_bwd_, Phase::backward, dz_, ProbeLevel::op);
    dz = &dz_;
  }

  if (use_bias_) {
    ReduceArgs r;
    r.x = at(rt, *dz), r.rows = rows, r.cols = filters_, r.out = at(rt, bias_.grad);
    op_reduce(rt, site_bias_bwd_, r);
    rt.probe(probe_bias_bwd_, Phase::backward, bias_.grad, ProbeLevel::op);
  }

  Conv2dArgs f = args(batch);
  f.x = at(rt, x_), f.dy = at(rt, *dz), f.out = at(rt, kernel_.grad);
  op_conv2d(rt, site_bwd_filter_, OpKind::conv2d_bwd_filter, f);
  rt.probe(probe_bwd_filter_, Phase::backward, kernel_.grad, ProbeLevel::op);

  if (!needs_input_grad()) return no_input_grad();
  place(rt, dx_, x_.shape);  // the kernel overwrites it
  Tensor& dx = dx_;
  Conv2dArgs d = args(batch);
  d.filter = at(rt, kernel_.value), d.dy = at(rt, *dz), d.out = at(rt, dx);
  op_conv2d(rt, site_bwd_data_, OpKind::conv2d_bwd_data, d);
  rt.probe(probe_bwd_data_, Phase::backward, dx, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
