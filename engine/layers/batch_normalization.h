#pragma once
// BatchNormalization over every axis but the last (channels), with Keras' defaults and update rule:
// training normalises with the batch's mean and biased variance and moves
// moving = moving * momentum + batch * (1 - momentum); inference uses the moving statistics.
// Training never reads the moving statistics, so their update is probed as an op of its own
// (moving_stats.fwd, after the layer's output): a difference there (another momentum) shows, though no other
// value of a step differs.

#include <string>

#include "engine/layers/layer.h"

namespace trainrr {

class BatchNormalization : public Layer {
 public:
  BatchNormalization(std::string name, double momentum, double epsilon);

  std::string type() const override { return "BatchNormalization"; }
  Result<Shape> build(const Shape& input, Runtime& rt) override;
  const Tensor& forward(const Tensor& x, Runtime& rt, bool training) override;
  const Tensor& backward(const Tensor& dy, Runtime& rt) override;
  std::vector<Param*> params() override { return {&gamma_, &beta_}; }
  std::vector<NamedTensor*> state() override { return {&moving_mean_, &moving_variance_}; }

 private:
  float momentum_, one_minus_momentum_, epsilon_;
  int64_t channels_ = 0;

  Param gamma_;                  // (c,), ones
  Param beta_;                   // (c,), zeros
  NamedTensor moving_mean_;      // (c,), zeros
  NamedTensor moving_variance_;  // (c,), ones
  bool trained_ = false;         // whether the last forward used batch statistics
  Tensor xhat_;                  // (rows, c): the last forward's normalised input
  std::vector<float> inv_std_;   // (c,): 1 / sqrt(var + epsilon) of the last forward
  Tensor stats_;                 // (2, c): batch mean and variance, or dbeta and dgamma in backward
  std::vector<float> scratch_;   // (rows, c) or (rows, 2c)
  Tensor y_;                     // the last forward output
  Tensor moving_stats_;          // (2, c): moving mean and variance after a training forward, as probed
  Tensor dx_;                    // the last backward's input gradient
  // In a run on a device: inv_std_ and scratch_ in device memory.
  Tensor inv_std_device_, scratch_device_;
  const Tensor& forward_on_device(const Tensor& x, Runtime& rt, bool training);
  const Tensor& backward_on_device(const Tensor& dy, Runtime& rt);
  // After a training forward: the moving statistics' update as an op, probed at levels op and layer.
  void probe_moving_statistics(Runtime& rt);

  std::string site_stats_, site_sums_, probe_stats_, probe_fwd_, probe_sums_, probe_bwd_, probe_out_,
      probe_dx_, probe_moving_, probe_moving_layer_;
};

}  // namespace trainrr
