#include "engine/kernels/conv_im2col.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_blocked.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/kernels/matmul_splitk.h"
#include "engine/kernels/reduce.h"
#include "engine/kernels/reference.h"

namespace trainrr {
namespace {

// Declared properties, named so that each registration below reads as a table row.
constexpr bool kDeterministic = true, kNondeterministic = false;
constexpr bool kThreadIndependent = false, kThreadDependent = true;

Kernel matmul(const char* id, bool det, bool thr, Isa isa, MatmulFn fn) { return {{id, OpKind::matmul, det, thr, isa}, fn}; }
Kernel reduce(const char* id, bool det, bool thr, ReduceFn fn) {
  return {{id, OpKind::reduce, det, thr, Isa::generic}, nullptr, fn};
}
Kernel conv(const char* id, OpKind op, Isa isa, ConvFn fn) {
  return {{id, op, kDeterministic, kThreadIndependent, isa}, nullptr, nullptr, fn};
}

// Marks a kernel whose bits are another's for every input (KernelInfo::same_bits_as).
Kernel same_bits_as(const char* other, Kernel k) {
  k.info.same_bits_as = other;
  return k;
}

// Marks a kernel whose bits are the same on every x86-64 CPU (KernelInfo::portable).
Kernel portable(Kernel k) {
  k.info.portable = true;
  return k;
}

}  // namespace

void register_cpu_kernels(KernelRegistry& r) {
  r.add(portable(matmul("f32_matmul__cpu_reference", kDeterministic, kThreadIndependent, Isa::generic, matmul_reference)));
  r.add(portable(matmul("f32_matmul__cpu_blocked_generic", kDeterministic, kThreadIndependent, Isa::generic,
               matmul_blocked_generic)));
  // The generic kernel's bits with the widest registers this CPU has (gemm_blocked_unfused).
  r.add(portable(matmul("f32_matmul__cpu_portable", kDeterministic, kThreadIndependent, Isa::generic,
                        matmul_portable)));
  r.add(matmul("f32_matmul__cpu_splitk_threads_generic", kDeterministic, kThreadDependent, Isa::generic,
               matmul_splitk_threads_generic));
#if defined(__x86_64__)
  r.add(matmul("f32_matmul__cpu_blocked_avx2", kDeterministic, kThreadIndependent, Isa::avx2, matmul_blocked_avx2));
  r.add(matmul("f32_matmul__cpu_splitk_threads_avx2", kDeterministic, kThreadDependent, Isa::avx2,
               matmul_splitk_threads_avx2));
  // Same bits as the AVX2 kernel (one fused multiply-add chain per element), faster where available.
  r.add(same_bits_as("f32_matmul__cpu_blocked_avx2",
                     matmul("f32_matmul__cpu_blocked_avx512", kDeterministic, kThreadIndependent, Isa::avx512,
                            matmul_blocked_avx512)));
#endif
  // OpenBLAS may split k by thread; its core type is chosen inside the library (openblas_description).
  // Not where OPENBLAS_CORETYPE made it load code this CPU cannot run (openblas_runs_here).
  if (openblas_runs_here())
    r.add(matmul("f32_matmul__openblas_sgemm", kDeterministic, kThreadDependent, Isa::generic, matmul_openblas_sgemm));

  r.add(portable(reduce("f32_sum__cpu_sequential", kDeterministic, kThreadIndependent, reduce_sequential)));
  r.add(portable(reduce("f32_sum__cpu_pairwise", kDeterministic, kThreadIndependent, reduce_pairwise)));
  r.add(portable(reduce("f32_sum__cpu_chunked_threads", kDeterministic, kThreadIndependent, reduce_chunked_threads)));
  r.add(reduce("f32_sum__cpu_atomic_threads", kNondeterministic, kThreadDependent, reduce_atomic_threads));

  r.add(portable(conv("f32_conv2d_fwd__cpu_direct", OpKind::conv2d_fwd, Isa::generic, conv2d_fwd_direct)));
  r.add(portable(conv("f32_conv2d_bwd_data__cpu_direct", OpKind::conv2d_bwd_data, Isa::generic, conv2d_bwd_data_direct)));
  r.add(portable(conv("f32_conv2d_bwd_filter__cpu_direct", OpKind::conv2d_bwd_filter, Isa::generic,
             conv2d_bwd_filter_direct)));
  r.add(portable(conv("f32_conv2d_fwd__cpu_im2col_generic", OpKind::conv2d_fwd, Isa::generic, conv2d_fwd_im2col_generic)));
  r.add(portable(conv("f32_conv2d_bwd_data__cpu_im2col_generic", OpKind::conv2d_bwd_data, Isa::generic,
             conv2d_bwd_data_im2col_generic)));
  r.add(portable(conv("f32_conv2d_bwd_filter__cpu_im2col_generic", OpKind::conv2d_bwd_filter, Isa::generic,
             conv2d_bwd_filter_im2col_generic)));
  r.add(portable(conv("f32_conv2d_fwd__cpu_portable", OpKind::conv2d_fwd, Isa::generic, conv2d_fwd_portable)));
  r.add(portable(conv("f32_conv2d_bwd_data__cpu_portable", OpKind::conv2d_bwd_data, Isa::generic,
                      conv2d_bwd_data_portable)));
  r.add(portable(conv("f32_conv2d_bwd_filter__cpu_portable", OpKind::conv2d_bwd_filter, Isa::generic,
                      conv2d_bwd_filter_portable)));
#if defined(__x86_64__)
  r.add(conv("f32_conv2d_fwd__cpu_im2col_avx2", OpKind::conv2d_fwd, Isa::avx2, conv2d_fwd_im2col_avx2));
  r.add(conv("f32_conv2d_bwd_data__cpu_im2col_avx2", OpKind::conv2d_bwd_data, Isa::avx2,
             conv2d_bwd_data_im2col_avx2));
  r.add(conv("f32_conv2d_bwd_filter__cpu_im2col_avx2", OpKind::conv2d_bwd_filter, Isa::avx2,
             conv2d_bwd_filter_im2col_avx2));
  // Same bits as the AVX2 convolutions (the products are the same fused chains), faster where available.
  r.add(same_bits_as(
      "f32_conv2d_fwd__cpu_im2col_avx2",
      conv("f32_conv2d_fwd__cpu_im2col_avx512", OpKind::conv2d_fwd, Isa::avx512, conv2d_fwd_im2col_avx512)));
  r.add(same_bits_as("f32_conv2d_bwd_data__cpu_im2col_avx2",
                     conv("f32_conv2d_bwd_data__cpu_im2col_avx512", OpKind::conv2d_bwd_data, Isa::avx512,
                          conv2d_bwd_data_im2col_avx512)));
  r.add(same_bits_as("f32_conv2d_bwd_filter__cpu_im2col_avx2",
                     conv("f32_conv2d_bwd_filter__cpu_im2col_avx512", OpKind::conv2d_bwd_filter, Isa::avx512,
                          conv2d_bwd_filter_im2col_avx512)));
#endif

  // The trainer implements the loaders; the registry only declares them so that selection covers them.
  r.add(portable({{"loader__ordered", OpKind::loader, kDeterministic, kThreadIndependent, Isa::generic}}));
  r.add({{"loader__first_ready", OpKind::loader, kNondeterministic, kThreadDependent, Isa::generic}});
  // The gradient allreduce of a data-parallel run (engine/collective.h implements them). Open MPI's own
  // sum depends on the rank count and the message size ("thread dependent" in the selector's terms), the
  // arrival-order sum on which rank's gradients come first.
  // The tree adds in one fixed order, the exact sum rounds in integers: the same bits on every CPU.
  r.add(portable({{"allreduce__trainrr_tree", OpKind::allreduce, kDeterministic, kThreadIndependent, Isa::generic}}));
  r.add(portable({{"allreduce__trainrr_exact", OpKind::allreduce, kDeterministic, kThreadIndependent, Isa::generic}}));
  r.add({{"allreduce__mpi", OpKind::allreduce, kDeterministic, kThreadDependent, Isa::generic}});
  r.add({{"allreduce__arrival", OpKind::allreduce, kNondeterministic, kThreadDependent, Isa::generic}});
}

}  // namespace trainrr
