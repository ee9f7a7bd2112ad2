// The optimizers' updates of engine/optimizer.cc on the GPU, element by element. The hyperparameters are
// rounded to float on the host exactly where the CPU optimizer rounds them, and Adam's bias correction is
// computed on the host in double, as the CPU does, so every element's arithmetic is the CPU's.

#include <cmath>

#include "cuda/ops.h"
#include "cuda/ops_common.cuh"

namespace trainrr::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

__global__ void sgd_kernel(float* w, const float* g, int64_t n, float lr) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) w[i] -= lr * g[i];
}

__global__ void sgd_momentum_kernel(float* w, const float* g, float* m, int64_t n, float lr, float mom,
                                    bool nesterov) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    m[i] = mom * m[i] - lr * g[i];
    w[i] += nesterov ? mom * m[i] - lr * g[i] : m[i];
  }
}

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, int64_t n, AdamScalars s) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    if (s.decay != 0.0f) w[i] -= w[i] * s.decay;
    m[i] += (g[i] - m[i]) * s.one_minus_beta_1;
    v[i] += (g[i] * g[i] - v[i]) * s.one_minus_beta_2;
    w[i] -= s.lr_t * m[i] / (sqrtf(v[i]) + s.epsilon);
  }
}

// v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g, d = v - a^2 + eps, else d = v + eps;
// increment = lr g / sqrt(d); momentum: m = momentum m + increment, w -= m; else w -= increment.
// 1 - rho is computed in float, as the CPU's (1 - rho_) with a float rho_.
__global__ void rmsprop_kernel(float* w, const float* g, float* v, float* a, float* m, int64_t n, float lr,
                               float rho, float eps, float mom) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    v[i] = rho * v[i] + (1.0f - rho) * g[i] * g[i];
    float denominator;
    if (a) {
      a[i] = rho * a[i] + (1.0f - rho) * g[i];
      denominator = v[i] - a[i] * a[i] + eps;
    } else {
      denominator = v[i] + eps;
    }
    const float increment = lr * g[i] / sqrtf(denominator);
    if (m) {
      m[i] = mom * m[i] + increment;
      w[i] -= m[i];
    } else {
      w[i] -= increment;
    }
  }
}

// b^t as Optimizer::power computes it.
double power(double b, int64_t t, MathFamily math) {
  return math == MathFamily::portable ? pow_portable(b, t) : std::pow(b, static_cast<double>(t));
}

}  // namespace

Status sgd_update(const OptimizerConfig& c, float* w, const float* g, float* momentum, int64_t n, void* stream) {
  if (n < 0) return detail::bad_argument("sgd_update", "negative size");
  if (n == 0) return {};
  // The CPU keeps lr and momentum as floats (Sgd's members).
  const float lr = static_cast<float>(c.learning_rate), mom = static_cast<float>(c.momentum);
  if (mom == 0) {
    return detail::launch("sgd_kernel", sgd_kernel, detail::blocks_for(n), detail::kBlock, 0, stream, w, g, n,
                          lr);
  }
  if (!momentum) return detail::bad_argument("sgd_update", "momentum > 0 needs the momentum slot");
  return detail::launch("sgd_momentum_kernel", sgd_momentum_kernel, detail::blocks_for(n), detail::kBlock, 0,
                        stream, w, g, momentum, n, lr, mom, c.nesterov);
}

AdamScalars adam_scalars(const OptimizerConfig& c, int64_t t, MathFamily math) {
  // Adam(c, decoupled): weight decay only for adamw; the rest as Adam::update.
  const double lr = c.learning_rate, b1 = c.beta_1, b2 = c.beta_2, eps = c.epsilon;
  const double wd = c.type == "adamw" ? c.weight_decay : 0;
  AdamScalars s;
  s.lr_t = static_cast<float>(lr * std::sqrt(1 - power(b2, t, math)) / (1 - power(b1, t, math)));
  s.one_minus_beta_1 = static_cast<float>(1 - b1);
  s.one_minus_beta_2 = static_cast<float>(1 - b2);
  s.epsilon = static_cast<float>(eps);
  s.decay = static_cast<float>(lr * wd);
  return s;
}

Status adam_update(const OptimizerConfig& c, int64_t t, MathFamily math, float* w, const float* g, float* m,
                   float* v, int64_t n, void* stream) {
  if (n < 0) return detail::bad_argument("adam_update", "negative size");
  if (t < 1) return detail::bad_argument("adam_update", "the iteration count starts at 1");
  if (n == 0) return {};
  if (!m || !v) return detail::bad_argument("adam_update", "needs the m and v slots");
  return detail::launch("adam_kernel", adam_kernel, detail::blocks_for(n), detail::kBlock, 0, stream, w, g, m,
                        v, n, adam_scalars(c, t, math));
}

Status rmsprop_update(const OptimizerConfig& c, float* w, const float* g, float* velocity, float* momentum,
                      float* average_gradient, int64_t n, void* stream) {
  if (n < 0) return detail::bad_argument("rmsprop_update", "negative size");
  if (n == 0) return {};
  // RmsProp's members are floats: lr, rho, epsilon and momentum each rounded once from the configuration.
  const float lr = static_cast<float>(c.learning_rate), rho = static_cast<float>(c.rho);
  const float eps = static_cast<float>(c.epsilon), mom = static_cast<float>(c.momentum);
  if (!velocity) return detail::bad_argument("rmsprop_update", "needs the velocity slot");
  if (mom > 0 && !momentum) return detail::bad_argument("rmsprop_update", "momentum > 0 needs the momentum slot");
  if (c.centered && !average_gradient)
    return detail::bad_argument("rmsprop_update", "centered needs the average_gradient slot");
  return detail::launch("rmsprop_kernel", rmsprop_kernel, detail::blocks_for(n), detail::kBlock, 0, stream, w,
                        g, velocity, c.centered ? average_gradient : nullptr, mom > 0 ? momentum : nullptr, n,
                        lr, rho, eps, mom);
}

}  // namespace trainrr::cuda
