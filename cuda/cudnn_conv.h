#pragma once
// Conv2D forward, backward-data and backward-filter through cuDNN's backend (graph) API, opened at run time
// (dlopen of libcudnn.so.9): the library set is 470 MB and only a run on the GPU needs it. Host code only; no
// cuDNN or CUDA header leaks out.
//
// The tensors carry cuDNN's dimension order (x and y: N, C, H, W; the filter: K, C, R, S) with strides that
// describe the memory: x and y are trainrr's NHWC as they are; the filter is KRSC ([c_out, kh, kw, c_in], cuDNN's
// packed NHWC filter, which its engines support), so the caller transposes trainrr's HWIO filter into it
// (cuda::transpose), and a filter gradient out of it. An engine configuration is recorded as plain integers
// (trainrr::CudnnEngine: the engine's global index and its knob choices) and rebuilt from them into an
// execution plan.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/kernels/gpu_choice.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/result.h"

namespace trainrr::cuda {

class CudnnConv {
 public:
  // The byte alignment the tensors declare (CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT): part of the graph, so a
  // recorded engine rebuilds against the same one; run() rejects pointers that do not honour it. cudaMalloc's
  // 256 do.
  static constexpr int64_t kAlignment = 16;

  // An execution plan for one op and geometry. Copies share the cuDNN descriptors, which the last copy
  // destroys.
  struct Plan {
    OpKind op = OpKind::conv2d_fwd;
    Conv2dArgs shape;    // the geometry it was built for (pointers cleared)
    CudnnEngine engine;  // global index and knobs as asked; notes as the built engine declares; its workspace
    uint64_t workspace = 0;  // CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, bytes
    // CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION; empty where cuDNN gives none, and then json_note says
    // why.
    std::string json;
    std::string json_note;
    std::shared_ptr<const void> state;  // the descriptors (cuda/cudnn_conv.cc)
  };

  // The process's one copy: loaded on first use; the error names the library and dlerror's reason, or the
  // version when it is not a cuDNN 9.
  static Result<CudnnConv*> load();

  uint64_t version() const;  // cudnnGetVersion(): 91900 is 9.19.0

  // cuDNN's own check of the geometry, without a GPU: the tensor, convolution and operation descriptors of
  // `op` are built and finalized (none of them needs a handle). op is conv2d_fwd, conv2d_bwd_data or
  // conv2d_bwd_filter.
  Status describe(OpKind op, const Conv2dArgs& shape);

  // The engine configurations cuDNN's heuristics offer (mode A, then FALLBACK's that A did not list), in that
  // order, each rebuilt from its recorded form (global index and knobs) into a plan to learn its workspace.
  // Those whose plan does not finalize on this GPU are left out; `left_out`, when given, says which and why.
  // Needs a GPU (a handle).
  Result<std::vector<CudnnEngine>> candidates(OpKind op, const Conv2dArgs& shape,
                                              std::vector<std::string>* left_out = nullptr);

  // The plan of `engine` (its global index and knobs; its notes and workspace are not read). The error is
  // cuDNN's reason this engine configuration does not finalize here: force_cudnn's `buildable_here`.
  Result<Plan> build(OpKind op, const Conv2dArgs& shape, const CudnnEngine& engine);

  // Runs `plan` on device pointers (Conv2dArgs' x, filter, dy and out, per plan.op), with `workspace` of at
  // least plan.workspace bytes, on `stream` (a cudaStream_t; null: the default stream). Asynchronous like a
  // kernel launch. `args`' geometry must be the plan's.
  Status run(const Plan& plan, const Conv2dArgs& args, void* workspace, void* stream);

  ~CudnnConv();

  struct Api;  // the functions looked up (cuda/cudnn_conv.cc)

 private:
  CudnnConv() = default;
  Status ensure_handle();  // with mu_ held
  std::unique_ptr<Api> api_;
  void* library_ = nullptr;
  // One handle for the process. Graphs and plans are built with it, and cudnnSetStream and
  // cudnnBackendExecute must not interleave between threads, hence the lock around every use.
  std::mutex mu_;
  void* handle_ = nullptr;  // cudnnHandle_t
};

}  // namespace trainrr::cuda
