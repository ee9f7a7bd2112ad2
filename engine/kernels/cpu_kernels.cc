#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/reference.h"

namespace trainrr {

void register_cpu_kernels(KernelRegistry& r) {
  r.add({{"f32_matmul__cpu_reference", OpKind::matmul, true, false, Isa::generic}, matmul_reference});
  r.add({{"f32_sum__cpu_sequential", OpKind::reduce, true, false, Isa::generic}, nullptr, reduce_sequential});
  r.add({{"f32_conv2d_fwd__cpu_direct", OpKind::conv2d_fwd, true, false, Isa::generic},
         nullptr, nullptr, conv2d_fwd_direct});
  r.add({{"f32_conv2d_bwd_data__cpu_direct", OpKind::conv2d_bwd_data, true, false, Isa::generic},
         nullptr, nullptr, conv2d_bwd_data_direct});
  r.add({{"f32_conv2d_bwd_filter__cpu_direct", OpKind::conv2d_bwd_filter, true, false, Isa::generic},
         nullptr, nullptr, conv2d_bwd_filter_direct});
  r.add({{"loader__ordered", OpKind::loader, true, false, Isa::generic}});
}

}  // namespace trainrr
