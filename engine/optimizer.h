#pragma once
// Optimizers with Keras' update rules and defaults. Updates are elementwise, so they run in parallel
// chunks without changing any bit.

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/device_backend.h"
#include "engine/layers/layer.h"

namespace trainrr {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every parameter from its grad; probes each updated parameter at level op.
  void step(const std::vector<Param*>& params, Runtime& rt);
  int64_t iterations() const { return iterations_; }

  // Slots (m, v, momentum, ...) as named tensors "<slot>/<param>", for checkpoints: host copies (in a run on a
  // device, after slots_to_host).
  std::vector<NamedTensor> state() const;
  // In a run on a device the slots live there (made on first use); this copies them to their host storage.
  void slots_to_host(DeviceBackend& device);
  // Restores slots and the iteration count; an unknown or misshapen slot is an error.
  Status restore(const std::vector<NamedTensor>& tensors, int64_t iterations);
  // The names of a parameter's slots, e.g. {"m", "v"}: its state is "<slot>/<param>", of the parameter's
  // shape.
  std::vector<std::string> slots() const { return slot_names(); }

 protected:
  // Slot names, e.g. {"m", "v"}.
  virtual std::vector<std::string> slot_names() const = 0;
  friend std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig&);
  friend void apply_optimizer_update(const OptimizerConfig&, MathFamily, int64_t, float*, const float*,
                                     std::span<float* const>, int64_t);
  // Updates w[0..n) given g and this parameter's slots; t is the 1-based iteration.
  virtual void update(float* w, const float* g, std::vector<float*>& slots, int64_t n, int64_t t) const = 0;
  // b^t, as the run's math family computes it (Runtime::math; set by step).
  double power(double b, int64_t t) const;

 private:
  struct Slots {
    std::string param;
    std::vector<Tensor> tensors;  // one per slot name
    std::string probe_site;       // "<param>/update:out": where its update is probed
  };
  Slots& slots_for(const Param& p);

  std::vector<Slots> slots_;
  OptimizerConfig config_;
  int64_t iterations_ = 0;
  MathFamily math_ = MathFamily::libm;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config);

// One update of w[0..n) by the optimizer `config` describes, at the 1-based iteration t, with its slots in
// slot order: the CPU's arithmetic on any memory the host can write (the emulated device's).
void apply_optimizer_update(const OptimizerConfig& config, MathFamily math, int64_t t, float* w, const float* g,
                            std::span<float* const> slots, int64_t n);

}  // namespace trainrr
