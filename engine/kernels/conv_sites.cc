#include "engine/kernels/conv_sites.h"

#include <algorithm>
#include <limits>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/cudnn_choice.h"

namespace trainrr {
namespace {

constexpr OpKind kConvOps[] = {OpKind::conv2d_fwd, OpKind::conv2d_bwd_data, OpKind::conv2d_bwd_filter};
constexpr std::string_view kIm2colSuffix = "__cuda_im2col_cublaslt";

std::string join(const std::vector<std::string>& v) {
  std::string all;
  for (const std::string& s : v) all += (all.empty() ? "" : "; ") + s;
  return all;
}

// The index of the chosen candidate, or candidates.size().
size_t chosen_index(const KernelChoice& k) {
  return static_cast<size_t>(std::find(k.candidates.begin(), k.candidates.end(), k.chosen) - k.candidates.begin());
}

}  // namespace

std::optional<OpKind> conv_op_from_name(std::string_view op) {
  for (OpKind o : kConvOps)
    if (op == op_name(o)) return o;
  return std::nullopt;
}

std::string conv_im2col_id(OpKind op) { return "f32_" + std::string(op_name(op)) + std::string(kIm2colSuffix); }

bool is_conv_im2col_id(std::string_view id) {
  return std::any_of(std::begin(kConvOps), std::end(kConvOps), [&](OpKind o) { return id == conv_im2col_id(o); });
}

std::vector<CudnnEngine> conv_engines_for_precision(const std::vector<CudnnEngine>& engines, bool tf32,
                                                    size_t* dropped) {
  std::vector<CudnnEngine> kept;
  for (const CudnnEngine& e : engines) {
    const bool narrower = std::any_of(e.numerical_notes.begin(), e.numerical_notes.end(), [](int32_t n) {
      return n == kCudnnNoteTensorCore || n == kCudnnNoteDownConvertInputs;
    });
    if (tf32 || !narrower) kept.push_back(e);
  }
  if (dropped) *dropped = engines.size() - kept.size();
  return kept;
}

std::vector<std::string> conv_site_candidates(OpKind op, const std::vector<CudnnEngine>& engines) {
  std::vector<std::string> ids;
  ids.reserve(engines.size() + 1);
  for (const CudnnEngine& e : engines) ids.push_back(cudnn_kernel_id(op, e));
  ids.push_back(conv_im2col_id(op));
  return ids;
}

Result<ConvPick> pick_conv(Policy policy, const std::vector<CudnnEngine>& engines, const ConvIm2col& im2col,
                           const std::vector<double>& timings_us) {
  const size_t n = engines.size() + 1;
  const size_t im2col_index = engines.size();
  ConvPick p;
  switch (policy) {
    case Policy::fast:
    case Policy::forced: {
      if (engines.empty()) {
        if (!im2col.runs) return Error{"no candidate runs this convolution: cuDNN offers no engine, and the im2col "
                                       "variant's cuBLASLt matmul has no algorithm (" + im2col.why_not + ")"};
        p.index = im2col_index;
        p.reason = "default: the im2col + cuBLASLt variant, the only candidate (no cuDNN engine)";
        return p;
      }
      auto c = pick_cudnn(Policy::fast, engines);
      if (!c) return c.error();
      p.index = c->index;
      p.reason = c->reason;
      return p;
    }
    case Policy::autotune: {
      auto fastest = fastest_candidate(timings_us, n, "candidates");
      if (!fastest) return fastest.error();
      if (timings_us[*fastest] == std::numeric_limits<double>::infinity())
        return Error{"autotune: none of the " + std::to_string(n) + " candidates ran"};
      p.index = *fastest;
      p.reason = "autotune: fastest of " + std::to_string(n) + " timed (" + std::to_string(engines.size()) +
                 " cuDNN engine" + (engines.size() == 1 ? "" : "s") + " and the im2col + cuBLASLt variant)";
      return p;
    }
    case Policy::deterministic:
    case Policy::portable: {
      if (!engines.empty()) {
        auto c = pick_cudnn(policy, engines);
        if (c) {
          p.index = c->index;
          p.reason = c->reason;
          p.rejected = std::move(c->rejected);
          if (!p.rejected.empty()) p.reason += "; rejected: " + join(p.rejected);
          return p;
        }
        // Every engine declared nondeterministic: they are the rejected ones.
        for (const CudnnEngine& e : engines)
          p.rejected.push_back("engine " + std::to_string(e.global_index) + ": " +
                               cudnn_numerical_note_name(kCudnnNoteNondeterministic));
      }
      if (im2col.runs && im2col.deterministic) {
        p.index = im2col_index;
        p.reason = engines.empty()
                       ? "deterministic: the im2col + cuBLASLt variant, the only candidate (no cuDNN engine), its "
                         "cuBLASLt algorithm deterministic"
                       : "deterministic: the im2col + cuBLASLt variant, every cuDNN engine being declared "
                         "nondeterministic (" + std::to_string(engines.size()) + " rejected); rejected: " +
                             join(p.rejected);
        return p;
      }
      p.rejected.push_back("the im2col + cuBLASLt variant: " +
                           (im2col.why_not.empty() ? std::string("its cuBLASLt algorithm is not deterministic")
                                                   : im2col.why_not));
      return Error{"the deterministic policy found no deterministic candidate among " + std::to_string(n) +
                   " for this convolution: " + join(p.rejected)};
    }
  }
  return Error{"unknown policy"};
}

ConvForcedTarget find_forced_conv(std::string_view chosen, OpKind op, const std::vector<CudnnEngine>& recorded,
                                  const std::vector<CudnnEngine>& here) {
  if (chosen == conv_im2col_id(op)) return {ConvForcedTarget::From::im2col, 0};
  for (size_t i = 0; i < recorded.size(); ++i)
    if (cudnn_kernel_id(op, recorded[i]) == chosen) return {ConvForcedTarget::From::recorded, i};
  for (size_t i = 0; i < here.size(); ++i)
    if (cudnn_kernel_id(op, here[i]) == chosen) return {ConvForcedTarget::From::here, i};
  return {};
}

bool has_conv_im2col_candidate(const KernelChoice& k) {
  const auto op = conv_op_from_name(k.op);
  if (!op) return false;
  const std::string id = conv_im2col_id(*op);
  return std::find(k.candidates.begin(), k.candidates.end(), id) != k.candidates.end();
}

const CudnnEngine* chosen_cudnn_engine(const KernelChoice& k) {
  const size_t i = chosen_index(k);
  return i < k.cudnn.size() ? &k.cudnn[i] : nullptr;
}

const BlasLtAlgo* chosen_blaslt_algo(const KernelChoice& k) {
  if (has_conv_im2col_candidate(k))
    return k.blaslt.size() == 1 && is_conv_im2col_id(k.chosen) ? &k.blaslt[0] : nullptr;
  const size_t i = chosen_index(k);
  return i < k.blaslt.size() ? &k.blaslt[i] : nullptr;
}

std::string gpu_choice_lists_error(const KernelChoice& k) {
  if (!k.blaslt.empty()) {
    if (k.blaslt_version == 0) return "kernel choice with cuBLASLt algorithms but no version";
    for (size_t i = 0; i < k.blaslt.size(); ++i)
      if (k.blaslt[i].split_k < 1) return "kernel choice cuBLASLt algorithm " + std::to_string(i) + " has split-K < 1";
    if (has_conv_im2col_candidate(k)) {
      // The im2col variant's own algorithm: its id is no candidate.
      if (k.blaslt.size() != 1)
        return "kernel choice at a convolution with the im2col candidate records " + std::to_string(k.blaslt.size()) +
               " cuBLASLt algorithms, not the one that candidate runs";
    } else {
      if (k.blaslt.size() != k.candidates.size()) return "kernel choice with cuBLASLt algorithms not one per candidate";
      for (size_t i = 0; i < k.blaslt.size(); ++i)
        if (blaslt_kernel_id(k.blaslt[i]) != k.candidates[i])
          return "kernel choice candidate " + std::to_string(i) + " is not the id of its cuBLASLt algorithm";
    }
  }
  if (!k.cudnn.empty()) {
    if (k.cudnn_version == 0) return "kernel choice with cuDNN engines but no version";
    const auto op = conv_op_from_name(k.op);
    if (!op) return "kernel choice with cuDNN engines at an op that is no convolution";
    // The engines cover the first cudnn.size() candidates; any after them are not cuDNN's.
    if (k.cudnn.size() > k.candidates.size()) return "kernel choice with more cuDNN engines than candidates";
    for (size_t i = 0; i < k.cudnn.size(); ++i)
      if (k.cudnn[i].global_index < 0 || cudnn_kernel_id(*op, k.cudnn[i]) != k.candidates[i])
        return "kernel choice candidate " + std::to_string(i) + " is not the id of its cuDNN engine";
  }
  return "";
}

}  // namespace trainrr
