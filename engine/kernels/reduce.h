#pragma once
// Column sums out[j] = sum_i x[i * cols + j] (ReduceArgs). The variants differ in the order of the
// additions, which is exactly what makes their bits differ:
//   pairwise        a balanced tree over rows (error grows with log(rows), not rows);
//   chunked_threads fixed row chunks summed in parallel, partials added in chunk order: the chunks
//                   depend on the shape only, so the bits do not depend on the thread count;
//   atomic_threads  the same chunks, each added into the output as it finishes, like atomicAdd on a
//                   GPU: the order, hence the bits, vary from call to call.

#include <cstdint>

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

void reduce_pairwise(const ReduceArgs& p, ThreadPool& pool);
void reduce_chunked_threads(const ReduceArgs& p, ThreadPool& pool);
void reduce_atomic_threads(const ReduceArgs& p, ThreadPool& pool);

// Rows per chunk of the threaded variants: a function of the shape only.
int64_t reduce_chunk_rows(int64_t rows, int64_t cols);

}  // namespace trainrr
