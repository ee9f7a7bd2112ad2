#include "engine/kernels/blaslt_choice.h"

#include <cstdio>

namespace trainrr {
namespace {

const char* reduction_name(uint32_t r) {
  switch (r) {
    case 0: return "none";
    case 1: return "inplace";
    case 2: return "computetype";
    case 4: return "outputtype";
    default: return nullptr;
  }
}

std::string reduction_str(uint32_t r) {
  const char* n = reduction_name(r);
  return n ? n : "scheme" + std::to_string(r);
}

}  // namespace

std::string blaslt_kernel_id(const BlasLtAlgo& a) {
  std::string id = "f32_matmul__cublaslt_algo" + std::to_string(a.id) + "_tile" + std::to_string(a.tile) +
                   "_stages" + std::to_string(a.stages);
  if (a.swizzle) id += "_swizzle" + std::to_string(a.swizzle);
  if (a.custom) id += "_custom" + std::to_string(a.custom);
  if (a.inner_shape) id += "_inner" + std::to_string(a.inner_shape);
  if (a.cluster_shape) id += "_cluster" + std::to_string(a.cluster_shape);
  if (a.split_k > 1) id += "_splitk" + std::to_string(a.split_k) + "_" + reduction_str(a.reduction);
  return id;
}

std::string blaslt_describe(const BlasLtAlgo& a) {
  std::string s = "cuBLASLt algorithm " + std::to_string(a.id) + ", tile " + std::to_string(a.tile) + ", stages " +
                  std::to_string(a.stages);
  if (a.split_k <= 1) return s + ", not split over K";
  s += ", split-K " + std::to_string(a.split_k);
  switch (a.reduction) {
    case 1: return s + ", reduced in place (ordered by counters)";
    case 2: return s + ", partials reduced in a separate step (compute type)";
    case 4: return s + ", partials reduced in a separate step (output type)";
    default: return s + ", reduction scheme " + std::to_string(a.reduction) + " (undocumented)";
  }
}

bool blaslt_deterministic(const BlasLtAlgo& a) {
  if (a.split_k <= 1) return true;
  return a.reduction == 1 || a.reduction == 2 || a.reduction == 4;
}

Result<BlasLtPick> pick_blaslt(Policy policy, const std::vector<BlasLtAlgo>& c, const std::vector<double>& t) {
  if (c.empty()) return Error{"cuBLASLt's heuristic offered no algorithm for this matmul"};
  BlasLtPick p;
  switch (policy) {
    case Policy::fast:
    case Policy::forced:
      p.index = 0;
      p.reason = "default: cuBLASLt's heuristic's first";
      return p;
    case Policy::autotune: {
      auto fastest = fastest_candidate(t, c.size(), "algorithms");
      if (!fastest) return fastest.error();
      p.index = *fastest;
      p.reason = "autotune: fastest of " + std::to_string(c.size()) + " timed";
      return p;
    }
    case Policy::deterministic:
    case Policy::portable:
      for (size_t i = 0; i < c.size(); ++i) {
        if (blaslt_deterministic(c[i])) {
          p.index = i;
          p.reason = i == 0 ? "deterministic: cuBLASLt's heuristic's first"
                            : "deterministic: the heuristic's first ordered algorithm (" + std::to_string(i) +
                                  " passed over)";
          return p;
        }
        p.rejected.push_back(blaslt_kernel_id(c[i]) + ": " + blaslt_describe(c[i]));
      }
      std::string all;
      for (const std::string& r : p.rejected) all += (all.empty() ? "" : "; ") + r;
      return Error{"the deterministic policy found no ordered cuBLASLt algorithm among " +
                   std::to_string(c.size()) + ": " + all};
  }
  return Error{"unknown policy"};
}

BlasLtForce force_blaslt(const BlasLtAlgo& recorded, uint64_t recorded_version, uint64_t version_here,
                         bool valid_here, const std::string& site) {
  BlasLtForce f;
  const std::string what = blaslt_kernel_id(recorded) + " (at " + site + ")";
  if (recorded_version != version_here) {
    f.note = what + " was recorded with cuBLASLt " + std::to_string(recorded_version) + ", and this is " +
             std::to_string(version_here) +
             ": an algorithm is only restorable into the same version, so this machine's choice ran";
  } else if (!valid_here) {
    f.note = what + " cannot run on this GPU (cublasLtMatmulAlgoCheck refused it): this machine's choice ran";
  } else {
    f.recorded = true;
  }
  return f;
}

}  // namespace trainrr
