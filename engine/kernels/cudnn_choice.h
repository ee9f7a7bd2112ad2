#pragma once
// cuDNN's convolution engines as a kernel site's candidates, and the rules each policy applies to them.
// Host logic only (no cuDNN header): the CUDA backend fills the candidates from cuDNN's heuristics (the
// backend API's engine configurations) and builds the execution plan of the one chosen here; tests describe
// candidates by hand.

#include <cstdint>
#include <string>
#include <vector>

#include "engine/kernels/gpu_choice.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_selector.h"

namespace trainrr {

// cudnnBackendNumericalNote_t values (cudnn_graph.h) that the rules and the reports name.
inline constexpr int32_t kCudnnNoteTensorCore = 0;
inline constexpr int32_t kCudnnNoteDownConvertInputs = 1;  // float inputs rounded to a narrower type (TF32)
inline constexpr int32_t kCudnnNoteFft = 3;
inline constexpr int32_t kCudnnNoteNondeterministic = 4;
inline constexpr int32_t kCudnnNoteWinograd = 5;  // and 6, 7, 8: WINOGRAD_TILE_4x4, _6x6, _13x13
inline constexpr int32_t kCudnnNoteWinogradTile13x13 = 8;

// "CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC", or "numerical note 12" for a value this build does not know.
std::string cudnn_numerical_note_name(int32_t note);

// Whether cuDNN declares the engine nondeterministic (CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC): the same inputs
// can give different bits call to call, typically from atomic adds.
bool cudnn_nondeterministic(const CudnnEngine& e);

// The kernel id of an engine at a conv site: op, engine and knobs, and "_nondeterministic" when cuDNN says
// so: "f32_conv2d_bwd_filter__cudnn_engine3_k2v1_k14v4_nondeterministic". op is conv2d_fwd,
// conv2d_bwd_data or conv2d_bwd_filter.
std::string cudnn_kernel_id(OpKind op, const CudnnEngine& e);

// "cuDNN engine 34 (knobs tile 3, stages 4; notes: tensor core)" for notes and causes.
std::string cudnn_describe(const CudnnEngine& e);

struct CudnnPick {
  size_t index = 0;
  std::string reason;
  std::vector<std::string> rejected;  // the deterministic policy: the engines it passed over, and why
};

// default: cuDNN's heuristic's first, whatever its notes. deterministic and portable: the first engine cuDNN
// does not declare nondeterministic (none: an error naming each). autotune: the fastest of `timings_us`
// (one per candidate; ties go to the earlier), as cuDNN's benchmark mode does.
Result<CudnnPick> pick_cudnn(Policy policy, const std::vector<CudnnEngine>& candidates,
                             const std::vector<double>& timings_us = {});

// A replay forcing a recorded engine: it runs when recorded with this cuDNN version and `buildable_here`
// (its engine configuration finalizes into a plan on this GPU); else this machine's pick runs, and `note` says
// why.
struct CudnnForce {
  bool recorded = false;
  std::string note;
};
CudnnForce force_cudnn(const CudnnEngine& recorded, OpKind op, uint64_t recorded_version, uint64_t version_here,
                       bool buildable_here, const std::string& site);

}  // namespace trainrr
