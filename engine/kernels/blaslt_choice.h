#pragma once
// cuBLASLt's matmul algorithms as a kernel site's candidates, and the rules each policy applies to them.
// Host logic only (no CUDA header): the CUDA backend (cuda/blaslt.cc) fills the candidates from
// cublasLtMatmulAlgoGetHeuristic and runs the one chosen here; tests describe candidates by hand.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/kernels/gpu_choice.h"
#include "engine/kernels/kernel_selector.h"

namespace trainrr {

// The kernel id of an algorithm at a site: every field that tells two algorithms apart, readable:
// "f32_matmul__cublaslt_algo21_tile18_stages20" (swizzle, custom option, inner and cluster shape follow when
// not 0), and for split-K "..._splitk4_inplace".
std::string blaslt_kernel_id(const BlasLtAlgo& algo);

// "split-K 4, reduced in place", "not split" and the like, for notes and causes.
std::string blaslt_describe(const BlasLtAlgo& algo);

// Whether the algorithm's result is the same bits every call on one GPU: not split over K, or split with a
// reduction scheme that cublasLt.h documents as ordered (in place with counters that "guarantee the
// sequentiality", or partials reduced in a separate step). A split-K algorithm that names no such scheme is
// not accepted as deterministic.
bool blaslt_deterministic(const BlasLtAlgo& algo);

// What a policy takes from the heuristic's candidates (in the heuristic's order, fastest estimate first).
struct BlasLtPick {
  size_t index = 0;                 // into the candidates
  std::string reason;               // for the kernel choice's reason
  std::vector<std::string> rejected;  // the deterministic policy: what it passed over and why
};

// default: the heuristic's first candidate. deterministic and portable: the first that blaslt_deterministic
// accepts (none: an error naming what each was). autotune: the fastest of `timings_us` (one per candidate,
// measured by the caller; ties go to the earlier candidate).
Result<BlasLtPick> pick_blaslt(Policy policy, const std::vector<BlasLtAlgo>& candidates,
                               const std::vector<double>& timings_us = {});

// A replay forcing a recorded algorithm: the recorded algorithm runs when it was recorded by this cuBLASLt
// version and `valid_here` (cublasLtMatmulAlgoCheck on this GPU) says it can run; else this machine's pick runs,
// and `note` says why.
struct BlasLtForce {
  bool recorded = false;  // the recorded algorithm runs
  std::string note;       // when it does not
};
BlasLtForce force_blaslt(const BlasLtAlgo& recorded, uint64_t recorded_version, uint64_t version_here,
                         bool valid_here, const std::string& site);

}  // namespace trainrr
