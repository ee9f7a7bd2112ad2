#pragma once
// A matrix product that splits the reduction dimension k into one part per thread and adds the parts'
// partial products in part order, like a split-k GEMM on a GPU. Deterministic for a given thread count;
// a different thread count changes the rounding of the sum, hence the bits.

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

void matmul_splitk_threads_generic(const MatmulArgs& p, ThreadPool& pool);
void matmul_splitk_threads_avx2(const MatmulArgs& p, ThreadPool& pool);

}  // namespace trainrr
