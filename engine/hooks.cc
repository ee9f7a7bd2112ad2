#include "engine/hooks.h"

namespace trainrr {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::forward: return "forward";
    case Phase::backward: return "backward";
    case Phase::update: return "update";
  }
  return "?";
}

const char* probe_level_name(ProbeLevel l) {
  switch (l) {
    case ProbeLevel::step: return "step";
    case ProbeLevel::layer: return "layer";
    case ProbeLevel::op: return "op";
  }
  return "?";
}

Hooks& null_hooks() {
  // Listens to nothing: a run without a listener reads nothing back from a device that it does not use.
  class NullHooks final : public Hooks {
   public:
    bool reads_step_tensors() const override { return false; }
    bool reads_drawn_values() const override { return false; }
  };
  static NullHooks hooks;
  return hooks;
}

}  // namespace trainrr
