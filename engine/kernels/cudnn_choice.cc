#include "engine/kernels/cudnn_choice.h"

#include <algorithm>

namespace trainrr {
namespace {

// cudnnBackendKnobType_t names (cudnn_graph.h) for the knobs people meet most; others print by number.
const char* knob_name(int32_t type) {
  switch (type) {
    case 1: return "swizzle";
    case 2: return "tile";
    case 4: return "edge";
    case 11: return "multiply";
    case 12: return "split-K buffer";
    case 13: return "tile K";
    case 14: return "stages";
    case 15: return "reduction mode";
    case 17: return "split-K slices";
    case 25: return "workspace";
    case 38: return "stream-K";
    default: return nullptr;
  }
}

}  // namespace

std::string cudnn_numerical_note_name(int32_t note) {
  static const char* const names[] = {"TENSOR_CORE", "DOWN_CONVERT_INPUTS", "REDUCED_PRECISION_REDUCTION",
                                      "FFT", "NONDETERMINISTIC", "WINOGRAD", "WINOGRAD_TILE_4x4",
                                      "WINOGRAD_TILE_6x6", "WINOGRAD_TILE_13x13", "STRICT_NAN_PROP"};
  if (note >= 0 && note < static_cast<int32_t>(std::size(names)))
    return std::string("CUDNN_NUMERICAL_NOTE_") + names[note];
  return "numerical note " + std::to_string(note);
}

bool cudnn_nondeterministic(const CudnnEngine& e) {
  return std::find(e.numerical_notes.begin(), e.numerical_notes.end(), kCudnnNoteNondeterministic) !=
         e.numerical_notes.end();
}

std::string cudnn_kernel_id(OpKind op, const CudnnEngine& e) {
  std::string id = "f32_" + std::string(op_name(op)) + "__cudnn_engine" + std::to_string(e.global_index);
  for (const CudnnKnob& k : e.knobs) id += "_k" + std::to_string(k.type) + "v" + std::to_string(k.value);
  if (cudnn_nondeterministic(e)) id += "_nondeterministic";
  return id;
}

std::string cudnn_describe(const CudnnEngine& e) {
  std::string s = "cuDNN engine " + std::to_string(e.global_index);
  std::string knobs;
  for (const CudnnKnob& k : e.knobs) {
    const char* n = knob_name(k.type);
    knobs += (knobs.empty() ? "" : ", ") + (n ? std::string(n) : "knob " + std::to_string(k.type)) + " " +
             std::to_string(k.value);
  }
  std::string notes;
  for (int32_t n : e.numerical_notes) notes += (notes.empty() ? "" : ", ") + cudnn_numerical_note_name(n);
  if (!knobs.empty() || !notes.empty())
    s += " (" + (knobs.empty() ? "" : "knobs " + knobs) + (knobs.empty() || notes.empty() ? "" : "; ") +
         (notes.empty() ? "" : "notes: " + notes) + ")";
  return s;
}

Result<CudnnPick> pick_cudnn(Policy policy, const std::vector<CudnnEngine>& c, const std::vector<double>& t) {
  if (c.empty()) return Error{"cuDNN offered no engine for this convolution"};
  CudnnPick p;
  switch (policy) {
    case Policy::fast:
    case Policy::forced:
      p.reason = cudnn_nondeterministic(c[0])
                     ? "default: cuDNN's heuristic's first, declared nondeterministic (the default policy takes it)"
                     : "default: cuDNN's heuristic's first";
      return p;
    case Policy::autotune: {
      auto fastest = fastest_candidate(t, c.size(), "engines");
      if (!fastest) return fastest.error();
      p.index = *fastest;
      p.reason = "autotune: fastest of " + std::to_string(c.size()) + " engines timed (cuDNN benchmark mode)";
      return p;
    }
    case Policy::deterministic:
    case Policy::portable:
      for (size_t i = 0; i < c.size(); ++i) {
        if (!cudnn_nondeterministic(c[i])) {
          p.index = i;
          p.reason = i == 0 ? "deterministic: cuDNN's heuristic's first"
                            : "deterministic: the heuristic's first engine not declared nondeterministic (" +
                                  std::to_string(i) + " rejected)";
          return p;
        }
        p.rejected.push_back("engine " + std::to_string(c[i].global_index) + ": " +
                             cudnn_numerical_note_name(kCudnnNoteNondeterministic));
      }
      std::string all;
      for (const std::string& r : p.rejected) all += (all.empty() ? "" : "; ") + r;
      return Error{"the deterministic policy found no cuDNN engine without CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC "
                   "among " + std::to_string(c.size()) + ": " + all};
  }
  return Error{"unknown policy"};
}

CudnnForce force_cudnn(const CudnnEngine& recorded, OpKind op, uint64_t recorded_version, uint64_t version_here,
                       bool buildable_here, const std::string& site) {
  CudnnForce f;
  const std::string what = cudnn_kernel_id(op, recorded) + " (at " + site + ")";
  if (recorded_version != version_here)
    f.note = what + " was recorded with cuDNN " + std::to_string(recorded_version) + ", and this is " +
             std::to_string(version_here) + ": engine numbers and knobs belong to one version, so this machine's "
             "choice ran";
  else if (!buildable_here)
    f.note = what + " cannot be built on this GPU (its engine configuration does not finalize into a plan): "
             "this machine's choice ran";
  else
    f.recorded = true;
  return f;
}

}  // namespace trainrr
