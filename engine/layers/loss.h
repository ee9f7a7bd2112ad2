#pragma once
// Losses in the numerically stable forms Keras uses. Labels are one float per sample: 0/1 for binary
// cross-entropy, a class index for sparse categorical cross-entropy, a target for MSE (which also takes
// [batch, k] targets flattened row-major).

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"
#include "engine/runtime.h"
#include "engine/tensor.h"

namespace trainrr {

struct LossValue {
  double loss = 0;  // mean over the batch
  Tensor grad;      // d loss / d prediction, same shape as the prediction
};

class Loss {
 public:
  virtual ~Loss() = default;
  virtual std::string name() const = 0;  // "binary_crossentropy", ...
  // Mean loss over the batch and its gradient. The mean goes through the reduction kernel at "loss/mean".
  virtual LossValue compute(const Tensor& pred, std::span<const float> labels, Runtime& rt) const = 0;
  // Whether the prediction shape (no batch dimension) fits this loss; an error says why.
  virtual Status check_output(const Shape& output, int num_classes) const = 0;
};

// name: binary_crossentropy | sparse_categorical_crossentropy | mse (alias mean_squared_error).
// softmax_output: the predictions come straight from a softmax over their last axis (the model's last layer),
// so each row is a distribution already.
Result<std::unique_ptr<Loss>> make_loss(std::string_view name, bool from_logits, bool softmax_output = false);

// The losses' arithmetic over a batch on the host: per_sample[batch] and d loss / d pred (grad, the shape of
// pred, every element written), as compute takes them before the mean. Labels are one per sample (mse: one
// per value).
void binary_crossentropy_rows(const float* pred, const float* labels, int64_t batch, bool from_logits,
                              MathFamily math, float* per_sample, float* grad);
void sparse_categorical_crossentropy_rows(const float* pred, const float* labels, int64_t batch, int64_t k,
                                          bool from_logits, bool softmax_output, MathFamily math,
                                          float* per_sample, float* grad);
void mean_squared_error_rows(const float* pred, const float* targets, int64_t batch, int64_t k,
                             float* per_sample, float* grad);

// Accuracy for the loss: argmax for sparse categorical; for binary, a threshold of 0.5 on probabilities and
// of 0 on logits (probability 0.5). Keras' BinaryAccuracy thresholds at 0.5 whatever from_logits says, which
// on logits means probability 0.62: trainrr keeps the threshold at probability 0.5. Returns the number of
// correct predictions.
int64_t count_correct(const Loss& loss, bool from_logits, const Tensor& pred, std::span<const float> labels);

}  // namespace trainrr
