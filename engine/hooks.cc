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
  static Hooks hooks;
  return hooks;
}

}  // namespace trainrr
