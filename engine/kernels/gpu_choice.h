#pragma once
// What a kernel choice on the GPU records beyond the kernel's id: the cuBLASLt algorithm (restorable with the
// same cuBLASLt), the cuDNN engine configuration and the launch shape. Plain values: the trace stores them, the CUDA backend fills them.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/result.h"

namespace trainrr {

// cublasLtReductionScheme_t (cublasLt.h): how the partial products of a split-K algorithm are combined.
enum class BlasLtReduction : uint32_t { none = 0, inplace = 1, compute_type = 2, output_type = 4 };

// One cuBLASLt algorithm as trainrr records it.
struct BlasLtAlgo {
  // cublasLtMatmulAlgo_t verbatim: "can be trivially serialized and later restored for use with the same
  // version of cuBLAS library" (cublasLt.h).
  std::array<uint64_t, 8> data{};
  // Its configuration (cublasLtMatmulAlgoConfigGetAttribute), decoded for people and for the policies.
  int32_t id = 0;             // CUBLASLT_ALGO_CONFIG_ID
  uint32_t tile = 0;          // TILE_ID
  int32_t split_k = 1;        // SPLITK_NUM
  uint32_t reduction = 0;     // REDUCTION_SCHEME (BlasLtReduction)
  uint32_t swizzle = 0;       // CTA_SWIZZLING
  uint32_t custom = 0;        // CUSTOM_OPTION
  uint32_t stages = 0;        // STAGES_ID
  uint16_t inner_shape = 0;   // INNER_SHAPE_ID
  uint16_t cluster_shape = 0; // CLUSTER_SHAPE_ID
  uint64_t workspace = 0;     // bytes it needs (the heuristic's workspaceSize)
  float waves = 0;            // the heuristic's wavesCount
  bool operator==(const BlasLtAlgo&) const = default;
};

// One engine configuration: what rebuilds it (the engine's global index within the operation graph, and its
// knob choices) and what cuDNN declares about it.
struct CudnnKnob {
  int32_t type = 0;  // cudnnBackendKnobType_t
  int64_t value = 0;
  bool operator==(const CudnnKnob&) const = default;
};
struct CudnnEngine {
  int64_t global_index = 0;              // CUDNN_ATTR_ENGINE_GLOBAL_INDEX
  std::vector<CudnnKnob> knobs;          // CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, in cuDNN's order
  std::vector<int32_t> numerical_notes;  // CUDNN_ATTR_ENGINE_NUMERICAL_NOTE
  std::vector<int32_t> behavior_notes;   // CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE
  uint64_t workspace = 0;                // bytes its plan needs
  bool operator==(const CudnnEngine&) const = default;
};

// How a CUDA kernel was launched: part of the choice where the result depends on it (a tree reduction's
// grouping is fixed by its grid and block).
struct LaunchShape {
  uint32_t grid_x = 1, grid_y = 1, grid_z = 1;
  uint32_t block_x = 1, block_y = 1, block_z = 1;
  uint64_t shared_bytes = 0;
  bool operator==(const LaunchShape&) const = default;
};

// Autotune over a library's candidates: the index of the fastest of `timings_us`, one per candidate (ties go
// to the earlier); an error when the timings are not one per candidate (`what`: "algorithms", "engines").
inline Result<size_t> fastest_candidate(const std::vector<double>& timings_us, size_t candidates,
                                        const std::string& what) {
  if (timings_us.size() != candidates)
    return Error{"autotune: " + std::to_string(timings_us.size()) + " timings for " + std::to_string(candidates) +
                 " " + what};
  size_t best = 0;
  for (size_t i = 1; i < timings_us.size(); ++i)
    if (timings_us[i] < timings_us[best]) best = i;
  return best;
}

}  // namespace trainrr
