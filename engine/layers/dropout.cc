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
  copy_tensor(y_, x);
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
  copy_tensor(dx_, dy);
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
