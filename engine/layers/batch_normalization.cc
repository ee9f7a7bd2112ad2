#include "engine/layers/batch_normalization.h"

#include <algorithm>
#include <cmath>

#include "engine/device_backend.h"
#include "engine/layers/layer_util.h"

namespace trainrr {

BatchNormalization::BatchNormalization(std::string name, double momentum, double epsilon)
    : Layer(std::move(name)),
      momentum_(static_cast<float>(momentum)),
      // Computed in double and rounded once, as Keras does with its Python float.
      one_minus_momentum_(static_cast<float>(1.0 - momentum)),
      epsilon_(static_cast<float>(epsilon)) {
  const std::string& n = this->name();
  site_stats_ = n + "/bn_stats.fwd";
  site_sums_ = n + "/bn_sums.bwd";
  probe_stats_ = site_stats_ + ":out";
  probe_fwd_ = n + "/batch_norm.fwd:out";
  probe_sums_ = site_sums_ + ":out";
  probe_bwd_ = n + "/batch_norm.bwd_data:out";
  probe_out_ = n + ":out";
  probe_dx_ = n + ":dx";
  probe_moving_ = n + "/moving_stats.fwd:out";
  probe_moving_layer_ = n + ":moving_stats";
}

Result<Shape> BatchNormalization::build(const Shape& input, Runtime& rt) {
  if (input.empty() || input.back() <= 0)
    return Error{name() + " expects input of rank 1 or more per sample with channels last, got " +
                 shape_str(input)};
  channels_ = input.back();
  if (Status s = rt.claim_params(name(), Runtime::values_of({channels_, 4})); !s) return s.error();
  const Shape c{channels_};
  gamma_ = Param{name() + ".gamma", Tensor(c, 1.0f), Tensor(c)};
  beta_ = Param{name() + ".beta", Tensor(c), Tensor(c)};
  moving_mean_ = NamedTensor{name() + ".moving_mean", Tensor(c)};
  moving_variance_ = NamedTensor{name() + ".moving_variance", Tensor(c, 1.0f)};
  return input;
}

const Tensor& BatchNormalization::forward(const Tensor& x, Runtime& rt, bool training) {
  TRAINRR_CHECK(x.rank() >= 2 && x.dim(-1) == channels_, name() + " got " + shape_str(x.shape));
  if (rt.device) return forward_on_device(x, rt, training);
  const int64_t c = channels_, rows = x.size() / c;
  const float* xp = x.ptr();
  reshape_storage(xhat_, {rows, c});
  inv_std_.resize(c);
  trained_ = training;

  if (training) {
    // Two passes (mean, then the mean of squared deviations), as tf.nn.moments does: one pass over
    // x and x^2 loses the variance to cancellation when the mean is large.
    reshape_storage(stats_, {2, c});
    float* mean = stats_.ptr();
    float* var = stats_.ptr() + c;
    ReduceArgs r;
    r.x = xp, r.rows = rows, r.cols = c, r.out = mean;
    run_reduce(*rt.kernels, site_stats_, r);
    const float inv_rows = 1.0f / static_cast<float>(rows);
    for (int64_t j = 0; j < c; ++j) mean[j] *= inv_rows;
    scratch_.resize(rows * c);
    float* xc = xhat_.ptr();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j) {
        xc[i * c + j] = xp[i * c + j] - mean[j];
        scratch_[i * c + j] = xc[i * c + j] * xc[i * c + j];
      }
    r.x = scratch_.data(), r.out = var;
    run_reduce(*rt.kernels, site_stats_, r);
    for (int64_t j = 0; j < c; ++j) var[j] *= inv_rows;
    rt.probe(probe_stats_, Phase::forward, stats_, ProbeLevel::op);

    float* mm = moving_mean_.value.ptr();
    float* mv = moving_variance_.value.ptr();
    for (int64_t j = 0; j < c; ++j) {
      inv_std_[j] = 1.0f / std::sqrt(var[j] + epsilon_);
      mm[j] = mm[j] * momentum_ + mean[j] * one_minus_momentum_;
      mv[j] = mv[j] * momentum_ + var[j] * one_minus_momentum_;
    }
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j) xc[i * c + j] *= inv_std_[j];
  } else {
    const float* mm = moving_mean_.value.ptr();
    const float* mv = moving_variance_.value.ptr();
    for (int64_t j = 0; j < c; ++j) inv_std_[j] = 1.0f / std::sqrt(mv[j] + epsilon_);
    float* xh = xhat_.ptr();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j) xh[i * c + j] = (xp[i * c + j] - mm[j]) * inv_std_[j];
  }

  reshape_storage(y_, x.shape);  // every element is written below
  Tensor& y = y_;
  const float* g = gamma_.value.ptr();
  const float* b = beta_.value.ptr();
  const float* xh = xhat_.ptr();
  float* yp = y.ptr();
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < c; ++j) yp[i * c + j] = xh[i * c + j] * g[j] + b[j];
  rt.probe(probe_fwd_, Phase::forward, y, ProbeLevel::op);
  rt.probe_unchanged(probe_out_, Phase::forward, y, ProbeLevel::layer);
  if (training) probe_moving_statistics(rt);
  return y;
}

void BatchNormalization::probe_moving_statistics(Runtime& rt) {
  // After the layer's output, so that on a device the kernel that updates them stays its forward op's. The
  // copy is made only where a probe will see it; the op ends with its probe whatever the level
  // (Runtime::op_done).
  const int64_t c = channels_;
  if (rt.probes(ProbeLevel::layer)) {
    place(rt, moving_stats_, {2, c});
    const size_t bytes = static_cast<size_t>(c) * sizeof(float);
    if (rt.device) {
      rt.device->copy(moving_stats_.dptr(), moving_mean_.value.dptr(), bytes);
      rt.device->copy(moving_stats_.dptr() + c, moving_variance_.value.dptr(), bytes);
    } else {
      std::copy_n(moving_mean_.value.ptr(), c, moving_stats_.ptr());
      std::copy_n(moving_variance_.value.ptr(), c, moving_stats_.ptr() + c);
    }
  }
  rt.probe(probe_moving_, Phase::forward, moving_stats_, ProbeLevel::op);
  rt.probe_unchanged(probe_moving_layer_, Phase::forward, moving_stats_, ProbeLevel::layer);
}

const Tensor& BatchNormalization::backward(const Tensor& dy, Runtime& rt) {
  const int64_t c = channels_, rows = xhat_.dim(0);
  TRAINRR_CHECK(dy.size() == rows * c, name() + " got dy " + shape_str(dy.shape));
  if (rt.device) return backward_on_device(dy, rt);
  const float* d = dy.ptr();
  const float* xh = xhat_.ptr();

  // One reduction gives both parameter gradients: columns [0, c) sum dy (dbeta), [c, 2c) sum dy * xhat.
  scratch_.resize(rows * 2 * c);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < c; ++j) {
      scratch_[i * 2 * c + j] = d[i * c + j];
      scratch_[i * 2 * c + c + j] = d[i * c + j] * xh[i * c + j];
    }
  reshape_storage(stats_, {2, c});
  ReduceArgs r;
  r.x = scratch_.data(), r.rows = rows, r.cols = 2 * c, r.out = stats_.ptr();
  run_reduce(*rt.kernels, site_sums_, r);
  rt.probe(probe_sums_, Phase::backward, stats_, ProbeLevel::op);
  const float* dbeta = stats_.ptr();
  const float* dgamma = stats_.ptr() + c;
  std::copy(dbeta, dbeta + c, beta_.grad.ptr());
  std::copy(dgamma, dgamma + c, gamma_.grad.ptr());

  if (!needs_input_grad()) return no_input_grad();
  reshape_storage(dx_, dy.shape);  // every element is written below
  Tensor& dx = dx_;
  float* dxp = dx.ptr();
  const float* g = gamma_.value.ptr();
  if (trained_) {
    // The mean and variance depend on x too:
    // dx = gamma * inv_std / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)).
    const float m = static_cast<float>(rows), inv_m = 1.0f / m;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j)
        dxp[i * c + j] =
            g[j] * inv_std_[j] * inv_m * (m * d[i * c + j] - dbeta[j] - xh[i * c + j] * dgamma[j]);
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c; ++j) dxp[i * c + j] = d[i * c + j] * g[j] * inv_std_[j];
  }
  rt.probe(probe_bwd_, Phase::backward, dx, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

// The same steps on a device (cuda/ops.h lists them), with the two sums at the same sites.
const Tensor& BatchNormalization::forward_on_device(const Tensor& x, Runtime& rt, bool training) {
  DeviceBackend& d = *rt.device;
  const int64_t c = channels_, rows = x.size() / c;
  device_reshape(d, xhat_, {rows, c});
  device_reshape(d, inv_std_device_, {c});
  device_reshape(d, y_, x.shape);
  trained_ = training;
  const float* mean = moving_mean_.value.dptr();
  if (training) {
    device_reshape(d, stats_, {2, c});
    float* batch_mean = stats_.dptr();
    float* var = stats_.dptr() + c;
    ReduceArgs r;
    r.x = x.dptr(), r.rows = rows, r.cols = c, r.out = batch_mean;
    d.column_sums(rt, site_stats_, r);
    const float inv_rows = 1.0f / static_cast<float>(rows);
    d.scale(batch_mean, c, inv_rows);
    device_reshape(d, scratch_device_, {rows, c});
    d.batch_norm_square_deviations(x.dptr(), batch_mean, scratch_device_.dptr(), rows, c);
    r.x = scratch_device_.dptr(), r.out = var;
    d.column_sums(rt, site_stats_, r);
    d.scale(var, c, inv_rows);
    rt.probe(probe_stats_, Phase::forward, stats_, ProbeLevel::op);
    d.batch_norm_statistics(batch_mean, var, epsilon_, momentum_, one_minus_momentum_, inv_std_device_.dptr(),
                            moving_mean_.value.dptr(), moving_variance_.value.dptr(), c);
    mean = batch_mean;
  } else {
    d.batch_norm_inverse_std(moving_variance_.value.dptr(), epsilon_, inv_std_device_.dptr(), c);
  }
  d.batch_norm_normalize(x.dptr(), mean, inv_std_device_.dptr(), gamma_.value.dptr(), beta_.value.dptr(),
                         xhat_.dptr(), y_.dptr(), rows, c);
  rt.probe(probe_fwd_, Phase::forward, y_, ProbeLevel::op);
  rt.probe_unchanged(probe_out_, Phase::forward, y_, ProbeLevel::layer);
  if (training) probe_moving_statistics(rt);
  return y_;
}

const Tensor& BatchNormalization::backward_on_device(const Tensor& dy, Runtime& rt) {
  DeviceBackend& d = *rt.device;
  const int64_t c = channels_, rows = xhat_.dim(0);
  device_reshape(d, scratch_device_, {rows, 2 * c});
  d.batch_norm_backward_columns(dy.dptr(), xhat_.dptr(), scratch_device_.dptr(), rows, c);
  device_reshape(d, stats_, {2, c});
  ReduceArgs r;
  r.x = scratch_device_.dptr(), r.rows = rows, r.cols = 2 * c, r.out = stats_.dptr();
  d.column_sums(rt, site_sums_, r);
  rt.probe(probe_sums_, Phase::backward, stats_, ProbeLevel::op);
  const float* dbeta = stats_.dptr();
  const float* dgamma = stats_.dptr() + c;
  d.copy(beta_.grad.dptr(), dbeta, static_cast<size_t>(c) * sizeof(float));
  d.copy(gamma_.grad.dptr(), dgamma, static_cast<size_t>(c) * sizeof(float));

  if (!needs_input_grad()) return no_input_grad();
  device_reshape(d, dx_, dy.shape);
  d.batch_norm_backward_data(dy.dptr(), xhat_.dptr(), gamma_.value.dptr(), inv_std_device_.dptr(), dbeta, dgamma,
                             trained_, dx_.dptr(), rows, c);
  rt.probe(probe_bwd_, Phase::backward, dx_, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx_, ProbeLevel::layer);
  return dx_;
}

}  // namespace trainrr
