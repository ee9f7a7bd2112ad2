#include "engine/layers/dropout.h"

#include "engine/counter_rng.h"

#include "engine/layers/layer_util.h"

namespace trainrr {

Dropout::Dropout(std::string name, double rate)
    : Layer(std::move(name)), rate_(rate), scale_(static_cast<float>(1.0 / (1.0 - rate))) {
  TRAINRR_CHECK(rate >= 0 && rate < 1, this->name() + " rate " + std::to_string(rate));
  site_ = "dropout/" + this->name();
  probe_fwd_ = this->name() + "/dropout.fwd:out";
  probe_bwd_ = this->name() + "/dropout.bwd:out";
  probe_out_ = this->name() + ":out";
  probe_dx_ = this->name() + ":dx";
}

Result<Shape> Dropout::build(const Shape& input, Runtime& /*rt*/) { return input; }

const Tensor& Dropout::forward(const Tensor& x, Runtime& rt, bool training) {
  // Keras skips the op (and so the draw) when the rate is 0.
  masked_ = training && rate_ > 0;
  if (rt.device && masked_) {
    DeviceBackend& d = *rt.device;
    const int64_t n = x.size();
    device_reshape(d, y_, x.shape);
    // The hooks decide the draw (key and position) as on the CPU; the device draws it. Hooks that read the
    // values drawn see them read back.
    const RngDraw draw = rt.rng->reserve(site_, site_, static_cast<uint64_t>(n));
    if (rt.hooks->reads_drawn_values()) {
      device_reshape(d, u_device_, {n});
      d.uniform(draw.key, draw.counter, 0.0f, 1.0f, u_device_.dptr(), n);
      u_.resize(n);
      if (n) d.download(u_.data(), u_device_.dptr(), static_cast<size_t>(n) * sizeof(float));
      rt.rng->drawn(draw, std::as_bytes(std::span<const float>(u_)));
    }
    keep_device_.resize(d, static_cast<size_t>(n));
    d.dropout(draw.key, draw.counter, static_cast<float>(rate_), scale_, x.dptr(), y_.dptr(),
              static_cast<uint8_t*>(keep_device_.get()), n);
    rt.probe(probe_fwd_, Phase::forward, y_, ProbeLevel::op);
    rt.probe_unchanged(probe_out_, Phase::forward, y_, ProbeLevel::layer);
    return y_;
  }
  copy_in(rt, y_, x);
  Tensor& y = y_;
  if (masked_) {
    const int64_t n = x.size();
    u_.resize(n);
    keep_.resize(n);
    rt.rng->uniform(site_, site_, u_, 0.0f, 1.0f);
    const float rate = static_cast<float>(rate_);
    // As tf.nn.dropout: multiply by the reciprocal, and select zeros (so a dropped inf gives 0, not NaN).
    float* yp = y.ptr();
    for (int64_t i = 0; i < n; ++i) {
      keep_[i] = rng::dropout_keeps(u_[i], rate);
      yp[i] = rng::dropout_apply(keep_[i], yp[i], scale_);
    }
    rt.probe(probe_fwd_, Phase::forward, y, ProbeLevel::op);
  }
  rt.probe_unchanged(probe_out_, Phase::forward, y, ProbeLevel::layer);
  return y;
}

const Tensor& Dropout::backward(const Tensor& dy, Runtime& rt) {
  if (!needs_input_grad()) return no_input_grad();
  if (rt.device && masked_) {
    DeviceBackend& d = *rt.device;
    TRAINRR_CHECK(dy.shape == y_.shape, name() + " got dy " + shape_str(dy.shape));
    device_reshape(d, dx_, dy.shape);
    d.dropout_backward(static_cast<const uint8_t*>(keep_device_.get()), scale_, dy.dptr(), dx_.dptr(), dy.size());
    rt.probe(probe_bwd_, Phase::backward, dx_, ProbeLevel::op);
    rt.probe_unchanged(probe_dx_, Phase::backward, dx_, ProbeLevel::layer);
    return dx_;
  }
  copy_in(rt, dx_, dy);
  Tensor& dx = dx_;
  if (masked_) {
    TRAINRR_CHECK(dy.size() == static_cast<int64_t>(keep_.size()), name() + " got dy " + shape_str(dy.shape));
    float* p = dx.ptr();
    for (int64_t i = 0; i < dx.size(); ++i) p[i] = rng::dropout_apply(keep_[i], p[i], scale_);
    rt.probe(probe_bwd_, Phase::backward, dx, ProbeLevel::op);
  }
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
