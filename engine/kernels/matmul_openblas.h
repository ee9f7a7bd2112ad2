#pragma once
// OpenBLAS sgemm. Its bits depend on the OpenBLAS version, the core type it dispatched to
// (OPENBLAS_CORETYPE) and its thread count, so a recorded choice carries openblas_description().

#include <string>

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

// Runs cblas_sgemm with OpenBLAS set to the pool's thread count.
void matmul_openblas_sgemm(const MatmulArgs& p, ThreadPool& pool);

// "OpenBLAS 0.3.21 core=Haswell threads=2": version, core type and current thread count.
std::string openblas_description();

// Sets OpenBLAS's thread count (matmul_openblas_sgemm does so on every call).
void openblas_use_threads(int threads);

}  // namespace trainrr
