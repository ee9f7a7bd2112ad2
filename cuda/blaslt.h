#pragma once
// cuBLASLt, opened at run time (dlopen of libcublasLt.so.13): the library is 500 MB and only a run on the GPU
// needs it. Host code only.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/result.h"

namespace trainrr::cuda {

class BlasLt {
 public:
  // The process's one copy: loaded on first use; the error names the library and dlerror's reason.
  static Result<BlasLt*> load();

  uint64_t version() const;  // cublasLtGetVersion(): 130100 is 13.1.0

  // The heuristic's candidates for C = op(A) op(B) in float32 (row-major, as MatmulArgs), compute type 32F
  // (or FAST_TF32 when `tf32`), at most `max_candidates`, each needing at most `max_workspace` bytes, and each
  // accepting the alignment of `shape`'s pointers (blaslt_alignment; null counts as 256 bytes).
  // Needs a GPU (a cuBLASLt handle).
  Result<std::vector<BlasLtAlgo>> candidates(const MatmulArgs& shape, bool tf32, size_t max_workspace,
                                             int max_candidates);
  // Whether `algo` can run this matmul on this GPU (cublasLtMatmulAlgoCheck).
  bool valid_here(const BlasLtAlgo& algo, const MatmulArgs& shape, bool tf32);
  // Runs the matmul with `algo` on device pointers (a, b, c in MatmulArgs), with trainrr's own workspace.
  Status matmul(const BlasLtAlgo& algo, const MatmulArgs& args, bool tf32, void* workspace, size_t workspace_bytes,
                void* stream);

  ~BlasLt();

  struct Api;  // the functions looked up (cuda/blaslt.cc)

 private:
  BlasLt() = default;
  Status ensure_handle();
  std::unique_ptr<Api> api_;
  void* library_ = nullptr;
  void* handle_ = nullptr;  // cublasLtHandle_t
};

}  // namespace trainrr::cuda
