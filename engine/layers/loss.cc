#include "engine/layers/loss.h"

#include <algorithm>
#include <cmath>

#include "engine/choice.h"
#include "engine/device_backend.h"
#include "engine/portable_math.h"

namespace trainrr {

namespace {

// Keras' backend epsilon, used to clip probabilities away from 0 and 1.
constexpr float kEpsilon = 1e-7f;

// The mean of per-sample losses, summed by the reduction kernel so the sum's kernel is a recorded choice.
// exp and log by the run's family (Runtime::math).
struct Math {
  MathFamily family;
  float exp(float x) const { return family == MathFamily::portable ? exp_portable(x) : std::exp(x); }
  float log(float x) const { return family == MathFamily::portable ? log_portable(x) : std::log(x); }
  float log1p(float x) const { return family == MathFamily::portable ? log1p_portable(x) : std::log1p(x); }
};

double batch_mean(const Tensor& per_sample, Runtime& rt) {
  float sum = 0;
  ReduceArgs r;
  r.x = per_sample.ptr(), r.rows = per_sample.size(), r.cols = 1, r.out = &sum;
  run_reduce(*rt.kernels, "loss/mean", r);
  return static_cast<double>(sum / static_cast<float>(per_sample.size()));
}

std::string values_str(const Shape& output) {
  if (output.size() != 1) return shape_str(output);
  return std::to_string(output[0]) + (output[0] == 1 ? " value" : " values");
}

void check_class_labels(std::span<const float> labels, int64_t k) {
  for (float l : labels) {
    const int64_t y = static_cast<int64_t>(l);
    TRAINRR_CHECK(y >= 0 && y < k && static_cast<float>(y) == l,
                  "label " + std::to_string(l) + " for " + std::to_string(k) + " classes");
  }
}

// A loss on a device: the labels uploaded, the loss's kernel (per-sample losses and the gradient), and the mean
// through the reduction at "loss/mean", read back, with the CPU's arithmetic.
template <class Kernel>
LossValue on_device(const Tensor& pred, std::span<const float> labels, Runtime& rt, int64_t batch,
                    const Kernel& kernel) {
  DeviceBackend& d = *rt.device;
  LossValue out;
  device_reshape(d, out.grad, pred.shape);
  Tensor y(Shape{static_cast<int64_t>(labels.size())}, std::vector<float>(labels.begin(), labels.end()));
  to_device(d, y);
  Tensor per, sum;
  device_reshape(d, per, {batch});
  device_reshape(d, sum, {1});
  kernel(d, y.dptr(), per.dptr(), out.grad.dptr());
  ReduceArgs r;
  r.x = per.dptr(), r.rows = batch, r.cols = 1, r.out = sum.dptr();
  d.column_sums(rt, "loss/mean", r);
  float total = 0;
  d.download(&total, sum.dptr(), sizeof(float));
  out.loss = static_cast<double>(total / static_cast<float>(batch));
  return out;
}

class BinaryCrossentropy : public Loss {
 public:
  explicit BinaryCrossentropy(bool from_logits) : from_logits_(from_logits) {}
  std::string name() const override { return "binary_crossentropy"; }

  LossValue compute(const Tensor& pred, std::span<const float> labels, Runtime& rt) const override {
    const int64_t batch = pred.dim(0);
    TRAINRR_CHECK(pred.size() == batch && static_cast<int64_t>(labels.size()) == batch,
                  "binary_crossentropy: prediction " + shape_str(pred.shape) + ", " +
                      std::to_string(labels.size()) + " labels");
    const bool from_logits = from_logits_;
    if (rt.device)
      return on_device(pred, labels, rt, batch, [&](DeviceBackend& d, const float* y, float* per, float* grad) {
        d.binary_crossentropy(pred.dptr(), y, batch, from_logits, rt.math, per, grad);
      });
    LossValue out;
    out.grad = Tensor(pred.shape);
    Tensor per({batch});
    binary_crossentropy_rows(pred.ptr(), labels.data(), batch, from_logits_, rt.math, per.ptr(), out.grad.ptr());
    out.loss = batch_mean(per, rt);
    return out;
  }

  Status check_output(const Shape& output, int num_classes) const override {
    if (output != Shape{1})
      return Error{"binary_crossentropy needs 1 value per sample but the model outputs " +
                   values_str(output) + " per sample"};
    if (num_classes > 2)
      return Error{"binary_crossentropy needs 2 classes but the data has " + std::to_string(num_classes) +
                   "; use sparse_categorical_crossentropy"};
    return {};
  }

 private:
  bool from_logits_;
};

class SparseCategoricalCrossentropy : public Loss {
 public:
  SparseCategoricalCrossentropy(bool from_logits, bool softmax_output)
      : from_logits_(from_logits), softmax_output_(softmax_output) {}
  std::string name() const override { return "sparse_categorical_crossentropy"; }

  LossValue compute(const Tensor& pred, std::span<const float> labels, Runtime& rt) const override {
    TRAINRR_CHECK(pred.rank() == 2 && static_cast<int64_t>(labels.size()) == pred.dim(0),
                  "sparse_categorical_crossentropy: prediction " + shape_str(pred.shape) + ", " +
                      std::to_string(labels.size()) + " labels");
    const int64_t batch = pred.dim(0), k = pred.dim(1);
    const bool from_logits = from_logits_, softmax_output = softmax_output_;
    if (rt.device) {
      // The device cannot stop on a label that is no class index: they are checked here, on the host.
      check_class_labels(labels, k);
      return on_device(pred, labels, rt, batch, [&](DeviceBackend& d, const float* y, float* per, float* grad) {
        d.sparse_categorical_crossentropy(pred.dptr(), y, batch, k, from_logits, softmax_output, rt.math, per, grad);
      });
    }
    LossValue out;
    out.grad = Tensor(pred.shape);
    Tensor per({batch});
    sparse_categorical_crossentropy_rows(pred.ptr(), labels.data(), batch, k, from_logits_, softmax_output_, rt.math,
                                         per.ptr(), out.grad.ptr());
    out.loss = batch_mean(per, rt);
    return out;
  }

  Status check_output(const Shape& output, int num_classes) const override {
    if (output.size() != 1)
      return Error{"sparse_categorical_crossentropy needs one score per class but the model outputs " +
                   shape_str(output) +
                   " per sample; add a Flatten layer and a Dense layer with one unit per class"};
    if (num_classes > 0 && output[0] < num_classes)
      return Error{"the model outputs " + values_str(output) + " per sample (one score per class) but the " +
                   "labels go up to " + std::to_string(num_classes - 1) + ", " + std::to_string(num_classes) +
                   " classes counting from 0"};
    // More scores than classes is fine, as in Keras: a class the data set happens not to hold.
    return {};
  }

 private:
  bool from_logits_, softmax_output_;
};

class MeanSquaredError : public Loss {
 public:
  std::string name() const override { return "mse"; }

  LossValue compute(const Tensor& pred, std::span<const float> labels, Runtime& rt) const override {
    TRAINRR_CHECK(
        pred.rank() >= 1 && static_cast<int64_t>(labels.size()) == pred.size(),
        "mse: prediction " + shape_str(pred.shape) + ", " + std::to_string(labels.size()) + " targets");
    const int64_t batch = pred.dim(0), k = pred.size() / batch;
    if (rt.device)
      return on_device(pred, labels, rt, batch, [&](DeviceBackend& d, const float* y, float* per, float* grad) {
        d.mean_squared_error(pred.dptr(), y, batch, k, per, grad);
      });
    LossValue out;
    out.grad = Tensor(pred.shape);
    Tensor per({batch});
    mean_squared_error_rows(pred.ptr(), labels.data(), batch, k, per.ptr(), out.grad.ptr());
    out.loss = batch_mean(per, rt);
    return out;
  }

  Status check_output(const Shape& output, int /*num_classes*/) const override {
    // The data has one target per row.
    if (shape_size(output) != 1)
      return Error{"mse compares one output value per sample with the row's target, but the model outputs " +
                   values_str(output) + " per sample; end the model with a Dense layer of 1 unit"};
    return {};
  }
};

int64_t count_argmax(const Tensor& pred, std::span<const float> labels) {
  const int64_t batch = pred.dim(0), k = pred.size() / batch;
  int64_t correct = 0;
  for (int64_t i = 0; i < batch; ++i) {
    const float* z = pred.ptr() + i * k;
    const int64_t best = std::max_element(z, z + k) - z;  // the first maximum, as argmax
    correct += static_cast<float>(best) == labels[i];
  }
  return correct;
}

int64_t count_threshold(const Tensor& pred, std::span<const float> labels, float threshold) {
  int64_t correct = 0;
  for (int64_t i = 0; i < pred.size(); ++i) correct += (pred[i] > threshold ? 1.0f : 0.0f) == labels[i];
  return correct;
}

}  // namespace

void binary_crossentropy_rows(const float* pred, const float* labels, int64_t batch, bool from_logits,
                              MathFamily family, float* per, float* grad) {
  const Math math{family};
  const float inv_batch = 1.0f / static_cast<float>(batch);
  for (int64_t i = 0; i < batch; ++i) {
    const float y = labels[i], z = pred[i];
    if (from_logits) {
      // max(z, 0) - z y + log(1 + exp(-|z|)): never overflows, exact for large |z|.
      per[i] = std::max(z, 0.0f) - z * y + math.log1p(math.exp(-std::abs(z)));
      grad[i] = (1.0f / (1.0f + math.exp(-z)) - y) * inv_batch;
    } else {
      const float p = std::clamp(z, kEpsilon, 1.0f - kEpsilon);
      per[i] = -(y * math.log(p) + (1.0f - y) * math.log(1.0f - p));
      // The clip passes no gradient outside its range, as tf.clip_by_value.
      const bool inside = z >= kEpsilon && z <= 1.0f - kEpsilon;
      grad[i] = inside ? -(y / p - (1.0f - y) / (1.0f - p)) * inv_batch : 0.0f;
    }
  }
}

void sparse_categorical_crossentropy_rows(const float* pred, const float* labels, int64_t batch, int64_t k,
                                          bool from_logits, bool softmax_output, MathFamily family, float* per,
                                          float* grad) {
  const Math math{family};
  const float inv_batch = 1.0f / static_cast<float>(batch);
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t y = static_cast<int64_t>(labels[i]);
    TRAINRR_CHECK(y >= 0 && y < k && static_cast<float>(y) == labels[i],
                  "label " + std::to_string(labels[i]) + " for " + std::to_string(k) + " classes");
    const float* z = pred + i * k;
    float* g = grad + i * k;
    std::fill(g, g + k, 0.0f);
    if (from_logits) {
      // log softmax with the row maximum subtracted: finite for any logits.
      const float m = *std::max_element(z, z + k);
      float sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += math.exp(z[j] - m);
      // In shifted form, as TensorFlow's kernel: adding m back would round away the loss at large logits.
      per[i] = math.log(sum) - (z[y] - m);
      const float inv_sum = 1.0f / sum;
      for (int64_t j = 0; j < k; ++j) g[j] = math.exp(z[j] - m) * inv_sum * inv_batch;
      g[y] -= inv_batch;
    } else if (softmax_output) {
      // A softmax row sums to 1, so Keras' q = p / sum(p) is p; and the gradient's 1/sum term, the same
      // for every class, is one the softmax's backward cancels. Computing them would only add rounding.
      const float p = std::clamp(z[y], kEpsilon, 1.0f - kEpsilon);
      per[i] = -math.log(p);
      const bool inside = z[y] >= kEpsilon && z[y] <= 1.0f - kEpsilon;
      if (inside) g[y] = -inv_batch / p;
    } else {
      // Keras first scales the row to sum to 1, q = p / sum(p), so an output that is not a distribution
      // (sigmoid, linear) is read as one.
      float sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += z[j];
      const float q = z[y] / sum;
      per[i] = -math.log(std::clamp(q, kEpsilon, 1.0f - kEpsilon));
      // d/dp_j of -log(p_y / sum) = 1/sum - [j == y]/p_y. The clip passes no gradient outside its range.
      if (q >= kEpsilon && q <= 1.0f - kEpsilon) {
        const float each = inv_batch / sum;
        for (int64_t j = 0; j < k; ++j) g[j] = each;
        g[y] = each - inv_batch / z[y];
      }
    }
  }
}

void mean_squared_error_rows(const float* pred, const float* targets, int64_t batch, int64_t k, float* per,
                             float* grad) {
  // Keras averages over the last axis, then over the batch.
  const float inv_k = 1.0f / static_cast<float>(k);
  const float gscale = 2.0f / static_cast<float>(k * batch);
  for (int64_t i = 0; i < batch; ++i) {
    float s = 0;
    for (int64_t j = 0; j < k; ++j) {
      const float d = pred[i * k + j] - targets[i * k + j];
      s += d * d;
      grad[i * k + j] = d * gscale;
    }
    per[i] = s * inv_k;
  }
}

Result<std::unique_ptr<Loss>> make_loss(std::string_view name, bool from_logits, bool softmax_output) {
  if (name == "binary_crossentropy")
    return std::unique_ptr<Loss>(std::make_unique<BinaryCrossentropy>(from_logits));
  if (name == "sparse_categorical_crossentropy")
    return std::unique_ptr<Loss>(
        std::make_unique<SparseCategoricalCrossentropy>(from_logits, softmax_output));
  if (name == "mse" || name == "mean_squared_error") {
    if (from_logits) return Error{"loss '" + std::string(name) + "' does not take from_logits"};
    return std::unique_ptr<Loss>(std::make_unique<MeanSquaredError>());
  }
  if (name == "categorical_crossentropy" || name == "CategoricalCrossentropy")
    return Error{
        "loss '" + std::string(name) +
        "' (one-hot labels) is a Keras one that trainrr's engine lacks: "
        "sparse_categorical_crossentropy computes the same loss from class indices (the column of each "
        "one-hot row's 1)"};
  // Keras' other losses, which are not misspellings of these ('mae' is not 'mse').
  return Error{unknown_choice(
      "loss", name, {"binary_crossentropy", "sparse_categorical_crossentropy", "mse", "mean_squared_error"},
      {"mae", "MAE", "mean_absolute_error", "mape", "MAPE", "mean_absolute_percentage_error", "msle", "MSLE",
       "mean_squared_logarithmic_error", "huber", "huber_loss", "hinge", "squared_hinge", "categorical_hinge",
       "kld", "KLD", "kl_divergence", "kullback_leibler_divergence", "poisson", "cosine_similarity",
       "log_cosh", "logcosh", "binary_focal_crossentropy", "categorical_focal_crossentropy", "ctc",
       // Keras' class names, which compile takes as strings too.
       "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "Huber", "Hinge",
       "SquaredHinge", "CategoricalHinge", "KLDivergence", "Poisson", "CosineSimilarity", "LogCosh",
       "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "CTC"})};
}

int64_t count_correct(const Loss& loss, bool from_logits, const Tensor& pred, std::span<const float> labels) {
  if (pred.size() == 0) return 0;
  const int64_t batch = pred.dim(0), k = pred.size() / batch;
  TRAINRR_CHECK(
      static_cast<int64_t>(labels.size()) == batch || static_cast<int64_t>(labels.size()) == pred.size(),
      "count_correct: prediction " + shape_str(pred.shape) + ", " + std::to_string(labels.size()) +
          " labels");
  const std::string name = loss.name();
  // Logits at 0, probability 0.5 (not Keras' 0.5 on the raw output: see loss.h).
  if (name == "binary_crossentropy") return count_threshold(pred, labels, from_logits ? 0.0f : 0.5f);
  if (name == "sparse_categorical_crossentropy") return count_argmax(pred, labels);
  // Other losses: Keras' "accuracy" chooses by shape: binary for one output, sparse categorical for one
  // label per sample, else categorical (argmax of both agree).
  if (k == 1) return count_threshold(pred, labels, 0.5f);
  if (static_cast<int64_t>(labels.size()) == batch) return count_argmax(pred, labels);
  int64_t correct = 0;
  for (int64_t i = 0; i < batch; ++i) {
    const float* z = pred.ptr() + i * k;
    const float* t = labels.data() + i * k;
    correct += (std::max_element(z, z + k) - z) == (std::max_element(t, t + k) - t);
  }
  return correct;
}

}  // namespace trainrr
