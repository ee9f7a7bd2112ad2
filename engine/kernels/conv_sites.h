#pragma once
// The CUDA device's convolution sites as host logic (no CUDA or cuDNN type): which candidates a conv site has,
// what each policy picks among them, what a forced id names, and how a KernelChoice at such a site lays out its
// cuDNN and cuBLASLt records. The CUDA device (cuda/engine_conv.cc) calls these; the trace writer and reader,
// show, dump and the replayer's causes read a choice through them; CI, which has no GPU, tests them.
//
// A conv site's candidates, in the order considered: cuDNN's engine configurations for the op and geometry
// (cuda/cudnn_conv.h, CudnnConv::candidates: its heuristics' order), then trainrr's own variant, im2col (or
// col2im) around a cuBLASLt matmul, under the id conv_im2col_id(op). Where cuDNN is not built in or does not
// load, the im2col variant is the only candidate.
//
// Its KernelChoice records:
//   candidates  the cuDNN engines' ids (cudnn_kernel_id), then conv_im2col_id(op);
//   cudnn       one CudnnEngine per cuDNN candidate: it covers the first cudnn.size() candidates, the im2col
//               candidate (last) has no entry;
//   blaslt      empty, or exactly one algorithm: the cuBLASLt algorithm the im2col candidate runs (picked
//               inside it by the same policy), with blaslt_version. Its id is not a candidate.
// A conv choice without the im2col candidate (recorded before it existed: the candidates were the cuBLASLt
// algorithms of the im2col matmul) keeps the matmul layout: blaslt one per candidate.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hooks.h"
#include "engine/kernels/gpu_choice.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/result.h"

namespace trainrr {

// conv2d_fwd, conv2d_bwd_data or conv2d_bwd_filter from op_name's text; nullopt for any other op.
std::optional<OpKind> conv_op_from_name(std::string_view op);

// The im2col + cuBLASLt variant's id at a conv site of `op`: "f32_conv2d_fwd__cuda_im2col_cublaslt" (the
// backward-data one runs col2im after its matmul, under the same family name).
std::string conv_im2col_id(OpKind op);
// Whether `id` is the im2col variant's id of some conv op.
bool is_conv_im2col_id(std::string_view id);

// cuDNN's engines for a float32 convolution without TF32 (runtime.tf32 = false): those cuDNN notes as using tensor
// cores (on float32 data, TF32) or as rounding their inputs to a narrower type are left out, as frameworks
// leave them out when TF32 is off. With tf32 every engine stays. `dropped` (may be null) counts those left out.
std::vector<CudnnEngine> conv_engines_for_precision(const std::vector<CudnnEngine>& engines, bool tf32,
                                                    size_t* dropped = nullptr);

// The site's candidate ids: each engine's cudnn_kernel_id, then conv_im2col_id(op).
std::vector<std::string> conv_site_candidates(OpKind op, const std::vector<CudnnEngine>& engines);

// What the policy needs to know of the im2col candidate: whether its cuBLASLt matmul has an algorithm at all
// (`runs`), and whether the one picked inside it is deterministic (blaslt_deterministic).
struct ConvIm2col {
  bool runs = true;
  bool deterministic = false;
  std::string why_not;  // when it does not run, or is not deterministic: what its cuBLASLt pick said
};

struct ConvPick {
  size_t index = 0;  // into the site's candidates (the engines, then the im2col variant at engines.size())
  std::string reason;
  std::vector<std::string> rejected;  // deterministic and portable: the candidates passed over, and why
};

// The policies over a conv site's candidates (`engines`, then the im2col variant):
//   default (fast) and forced: cuDNN's heuristic's first; the im2col variant when cuDNN offers none;
//   deterministic and portable: pick_cudnn's rule over the engines (the first not declared nondeterministic),
//     then the im2col variant when its cuBLASLt pick is deterministic; none: an error naming each rejected;
//   autotune: the fastest of `timings_us` (one per candidate, the im2col variant last; ties go to the earlier).
Result<ConvPick> pick_conv(Policy policy, const std::vector<CudnnEngine>& engines, const ConvIm2col& im2col,
                           const std::vector<double>& timings_us = {});

// A forced conv site: what the hooks' chosen id names. `recorded` is the choice's cudnn after the hooks (a
// replay's recorded engines, or this machine's own when the hooks left them); `here` this machine's engines.
struct ConvForcedTarget {
  enum class From : uint8_t {
    recorded,  // recorded[index] has the chosen id: force_cudnn decides whether it can run here
    here,      // no recorded engine has it, here[index] does: it runs
    im2col,    // the im2col variant (its cuBLASLt algorithm forced as a matmul site's is)
    unknown,   // none of these: a DeviceError names it
  };
  From from = From::unknown;
  size_t index = 0;
};
ConvForcedTarget find_forced_conv(std::string_view chosen, OpKind op, const std::vector<CudnnEngine>& recorded,
                                  const std::vector<CudnnEngine>& here);

// ---- Reading a KernelChoice of any site (the layouts above and the matmul sites' one).

// Whether `k` is a conv choice whose candidates include the im2col variant (so blaslt is that variant's one
// algorithm, not one per candidate).
bool has_conv_im2col_candidate(const KernelChoice& k);
// The cuDNN engine that ran (the chosen candidate's entry in `cudnn`), or null.
const CudnnEngine* chosen_cudnn_engine(const KernelChoice& k);
// The cuBLASLt algorithm that ran: a matmul site's chosen candidate's, or at a conv site the im2col variant's
// when it was chosen; null otherwise.
const BlasLtAlgo* chosen_blaslt_algo(const KernelChoice& k);
// What is wrong with `k`'s cudnn and blaslt lists against its candidates, for the trace writer and reader; ""
// when nothing.
std::string gpu_choice_lists_error(const KernelChoice& k);

}  // namespace trainrr
