#pragma once
// The reference kernels: plain loops, sequential, deterministic. Every other kernel is validated
// against these.

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

void matmul_reference(const MatmulArgs& a, ThreadPool& pool);
void reduce_sequential(const ReduceArgs& a, ThreadPool& pool);
void conv2d_fwd_direct(const Conv2dArgs& a, ThreadPool& pool);
void conv2d_bwd_data_direct(const Conv2dArgs& a, ThreadPool& pool);
void conv2d_bwd_filter_direct(const Conv2dArgs& a, ThreadPool& pool);

}  // namespace trainrr
