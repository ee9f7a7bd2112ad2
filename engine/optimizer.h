#pragma once
// Optimizers with Keras' update rules and defaults. Updates are elementwise, so they run in parallel
// chunks without changing any bit.

#include <memory>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/layers/layer.h"

namespace trainrr {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every parameter from its grad; probes each updated parameter at level op.
  void step(const std::vector<Param*>& params, Runtime& rt);
  int64_t iterations() const { return iterations_; }

  // Slots (m, v, momentum, ...) as named tensors "<slot>/<param>", for checkpoints.
  std::vector<NamedTensor> state() const;
  // Restores slots and the iteration count; an unknown or misshapen slot is an error.
  Status restore(const std::vector<NamedTensor>& tensors, int64_t iterations);

 protected:
  // Slot names, e.g. {"m", "v"}.
  virtual std::vector<std::string> slot_names() const = 0;
  // Updates w[0..n) given g and this parameter's slots; t is the 1-based iteration.
  virtual void update(float* w, const float* g, std::vector<float*>& slots, int64_t n, int64_t t) const = 0;
  // b^t, as the run's math family computes it (Runtime::math; set by step).
  double power(double b, int64_t t) const;

 private:
  struct Slots {
    std::string param;
    std::vector<Tensor> tensors;  // one per slot name
  };
  Slots& slots_for(const Param& p);

  std::vector<Slots> slots_;
  int64_t iterations_ = 0;
  MathFamily math_ = MathFamily::libm;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config);

}  // namespace trainrr
