#pragma once
// Kernels: each op has candidate implementations with stable ids that say what they are
// (`f32_matmul__cpu_blocked_avx2`) and declared properties. The registry is an object that main (or a
// test) builds and fills explicitly; nothing registers itself.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"

namespace trainrr {

class ThreadPool;

enum class Isa : uint8_t { generic = 0, avx2 = 1, avx512 = 2 };
const char* isa_name(Isa isa);
Result<Isa> parse_isa(std::string_view name);
// What this CPU supports (CPUID).
Isa detect_isa();
// The CPU's feature flags as /proc/cpuinfo names them ("avx2", "avx512f", "avx512_bf16"), read through CPUID
// (and XGETBV: registers the OS does not save are not usable) on x86-64, so that they are the flags of the
// CPU this process runs on, an emulated one included; from /proc/cpuinfo elsewhere. Empty where unknown.
std::vector<std::string> cpu_flags();
// The CPU's name (CPUID's brand string on x86-64), or "unknown".
std::string cpu_model();
// detect_isa(), lowered by TRAINRR_ISA=generic|avx2|avx512 (an error names a value the CPU lacks).
Result<Isa> runtime_isa();

enum class OpKind : uint8_t { matmul, reduce, conv2d_fwd, conv2d_bwd_data, conv2d_bwd_filter, loader, allreduce };
const char* op_name(OpKind op);

// C[m, n] (+)= op(A)[m, k] * op(B)[k, n], row-major and contiguous.
// A is [m, k], or [k, m] when trans_a; B is [k, n], or [n, k] when trans_b.
struct MatmulArgs {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  const float* b = nullptr;
  float* c = nullptr;
  bool accumulate = false;  // C += ..., else C = ...
};

// out[j] = sum over i < rows of x[i * cols + j], for j < cols. cols == 1 is a plain sum.
struct ReduceArgs {
  const float* x = nullptr;
  int64_t rows = 0, cols = 0;
  float* out = nullptr;
  // Kernels that combine partials in completion order: on entry the order to combine them in (empty: as
  // they finish), on return the order taken. Null: not recorded.
  std::vector<uint32_t>* order = nullptr;
};

// NHWC input, HWIO filter (Keras' layout), NHWC output; zero padding.
struct Conv2dArgs {
  int64_t n = 0, h = 0, w = 0, c_in = 0;
  int64_t kh = 0, kw = 0, c_out = 0;
  int64_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0;
  int64_t out_h = 0, out_w = 0;
  const float* x = nullptr;       // [n, h, w, c_in]           input of fwd and bwd_filter
  const float* filter = nullptr;  // [kh, kw, c_in, c_out]     input of fwd and bwd_data
  const float* dy = nullptr;      // [n, out_h, out_w, c_out]  input of bwd_data and bwd_filter
  float* out = nullptr;           // y (fwd), dx (bwd_data) or dfilter (bwd_filter); overwritten
};

using MatmulFn = void (*)(const MatmulArgs&, ThreadPool&);
using ReduceFn = void (*)(const ReduceArgs&, ThreadPool&);
using ConvFn = void (*)(const Conv2dArgs&, ThreadPool&);

struct KernelInfo {
  std::string id;
  OpKind op = OpKind::matmul;
  bool deterministic = true;      // same inputs, same bits, every call
  bool thread_dependent = false;  // the bits depend on the thread count
  Isa isa = Isa::generic;         // instruction set required
  // The same bits on every x86-64 CPU, from SSE2 to AVX-512: baseline code only, or wider code whose
  // arithmetic is the baseline code's (no fused multiply-add, the same order). What the portable policy takes.
  bool portable = false;
  // The kernel whose bits this one gives for every input (the same arithmetic in wider registers), or "": a
  // selection between the two changes no number, and a cause does not name it.
  std::string same_bits_as;
};

struct Kernel {
  KernelInfo info;
  MatmulFn matmul = nullptr;
  ReduceFn reduce = nullptr;
  ConvFn conv = nullptr;  // conv2d_fwd, conv2d_bwd_data or conv2d_bwd_filter, per info.op
};

class KernelRegistry {
 public:
  void add(Kernel kernel);  // ids are unique
  const Kernel* find(std::string_view id) const;
  // Kernels of `op` that can run with `isa`, in registration order.
  std::vector<const Kernel*> candidates(OpKind op, Isa isa) const;
  const std::vector<Kernel>& all() const { return kernels_; }

 private:
  std::vector<Kernel> kernels_;
};

// Registers every CPU kernel of the engine, the data loaders included.
void register_cpu_kernels(KernelRegistry& registry);

// The op of kernel `id` where some build of this trainrr has such a kernel, on any instruction set or device:
// every CPU kernel (those of x86-64 and OpenBLAS included, whether or not this build or CPU has them), the
// CUDA backend's own kernels, and the ids it makes for cuBLASLt algorithms and cuDNN engines. nullopt for any
// other id: no trainrr of this version runs it. What a recorded kernel choice is held to.
std::optional<OpKind> kernel_op_in_any_build(std::string_view id);

}  // namespace trainrr
