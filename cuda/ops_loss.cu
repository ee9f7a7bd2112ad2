// The losses of engine/layers/loss.cc on the GPU: per-sample losses and d loss / d pred, one thread per sample
// (a row's sums in column order, as the CPU's loops), the CPU's clipping and epsilon rules.

#include <math_constants.h>

#include "cuda/ops.h"
#include "cuda/ops_common.cuh"

namespace trainrr::cuda {
namespace {

using detail::clamp_like_std;
using detail::first_index;
using detail::grid_stride;

// Keras' backend epsilon, as loss.cc.
constexpr float kEpsilon = 1e-7f;

// A label that is not a class index (the CPU aborts on one): NaN loss, zero gradient row.
__device__ inline bool class_index(float label, int64_t k, int64_t* y) {
  if (!(label >= 0.0f && label < static_cast<float>(k))) return false;
  *y = static_cast<int64_t>(label);
  return static_cast<float>(*y) == label;
}

__global__ void sparse_cce_kernel(const float* pred, const float* labels, int64_t batch, int64_t k,
                                  bool from_logits, bool softmax_output, float* per, float* grad) {
  const float inv_batch = 1.0f / static_cast<float>(batch);
  for (int64_t i = first_index(); i < batch; i += grid_stride()) {
    const float* z = pred + i * k;
    float* g = grad + i * k;
    for (int64_t j = 0; j < k; ++j) g[j] = 0.0f;  // the CPU's gradient tensor starts at zero
    int64_t y = 0;
    if (!class_index(labels[i], k, &y)) {
      per[i] = CUDART_NAN_F;
      continue;
    }
    if (from_logits) {
      // log softmax with the row's first maximum subtracted, in shifted form (see loss.cc).
      float m = z[0];
      for (int64_t j = 1; j < k; ++j)
        if (m < z[j]) m = z[j];
      float sum = 0.0f;
      for (int64_t j = 0; j < k; ++j) sum += expf(z[j] - m);
      per[i] = logf(sum) - (z[y] - m);
      const float inv_sum = 1.0f / sum;
      for (int64_t j = 0; j < k; ++j) g[j] = expf(z[j] - m) * inv_sum * inv_batch;
      g[y] -= inv_batch;
    } else if (softmax_output) {
      const float p = clamp_like_std(z[y], kEpsilon, 1.0f - kEpsilon);
      per[i] = -logf(p);
      if (z[y] >= kEpsilon && z[y] <= 1.0f - kEpsilon) g[y] = -inv_batch / p;
    } else {
      // Keras' q = p / sum(p): the row read as a distribution.
      float sum = 0.0f;
      for (int64_t j = 0; j < k; ++j) sum += z[j];
      const float q = z[y] / sum;
      per[i] = -logf(clamp_like_std(q, kEpsilon, 1.0f - kEpsilon));
      if (q >= kEpsilon && q <= 1.0f - kEpsilon) {
        const float each = inv_batch / sum;
        for (int64_t j = 0; j < k; ++j) g[j] = each;
        g[y] = each - inv_batch / z[y];
      }
    }
  }
}

__global__ void binary_ce_kernel(const float* pred, const float* labels, int64_t batch, bool from_logits,
                                 float* per, float* grad) {
  const float inv_batch = 1.0f / static_cast<float>(batch);
  for (int64_t i = first_index(); i < batch; i += grid_stride()) {
    const float y = labels[i], z = pred[i];
    if (from_logits) {
      // max(z, 0) - z y + log(1 + exp(-|z|)): never overflows.
      per[i] = detail::max_like_std(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
      grad[i] = (1.0f / (1.0f + expf(-z)) - y) * inv_batch;
    } else {
      const float p = clamp_like_std(z, kEpsilon, 1.0f - kEpsilon);
      per[i] = -(y * logf(p) + (1.0f - y) * logf(1.0f - p));
      const bool inside = z >= kEpsilon && z <= 1.0f - kEpsilon;  // no gradient through the clip
      grad[i] = inside ? -(y / p - (1.0f - y) / (1.0f - p)) * inv_batch : 0.0f;
    }
  }
}

__global__ void mse_kernel(const float* pred, const float* targets, int64_t batch, int64_t k, float* per,
                           float* grad) {
  // Keras averages over the last axis, then over the batch.
  const float inv_k = 1.0f / static_cast<float>(k);
  const float gscale = 2.0f / static_cast<float>(k * batch);
  for (int64_t i = first_index(); i < batch; i += grid_stride()) {
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      const float d = pred[i * k + j] - targets[i * k + j];
      s += d * d;
      grad[i * k + j] = d * gscale;
    }
    per[i] = s * inv_k;
  }
}

}  // namespace

Status sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch, int64_t k,
                                       bool from_logits, bool softmax_output, float* per_sample, float* grad,
                                       void* stream) {
  if (batch < 0 || k <= 0)
    return detail::bad_argument("sparse_categorical_crossentropy", "needs batch >= 0 and at least one class");
  if (batch == 0) return {};
  return detail::launch("sparse_cce_kernel", sparse_cce_kernel, detail::blocks_for(batch), detail::kBlock, 0,
                        stream, pred, labels, batch, k, from_logits, softmax_output, per_sample, grad);
}

Status binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                           float* per_sample, float* grad, void* stream) {
  if (batch < 0) return detail::bad_argument("binary_crossentropy", "negative batch");
  if (batch == 0) return {};
  return detail::launch("binary_ce_kernel", binary_ce_kernel, detail::blocks_for(batch), detail::kBlock, 0,
                        stream, pred, labels, batch, from_logits, per_sample, grad);
}

Status mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k, float* per_sample,
                          float* grad, void* stream) {
  if (batch < 0 || k <= 0) return detail::bad_argument("mean_squared_error", "needs batch >= 0 and k >= 1");
  if (batch == 0) return {};
  return detail::launch("mse_kernel", mse_kernel, detail::blocks_for(batch), detail::kBlock, 0, stream, pred,
                        targets, batch, k, per_sample, grad);
}

}  // namespace trainrr::cuda
