// Column sums on the GPU (the reduction kernels of engine/kernels/reduce.h): f32_sum__cuda_tree, in a fixed
// order, and f32_sum__cuda_atomic, in the order blocks finish.
//
// Both start the same way. A block is bx x by threads (bx columns side by side, so that a warp reads
// consecutive floats of a row; by rows); the grid is gx x gy blocks (gx blocks down the rows, gy across the
// columns). Thread (tx, ty) of block (bx_i, by_i) takes column j = by_i * bx + tx and adds rows
// bx_i * by + ty, then every gx * by rows after it, in increasing order, from 0. The by sums of a column are then
// added in shared memory by a tree with fixed pairing (s[ty] += s[ty + w], w = by/2, ..., 1). The tree variant
// stores each block's sum as partial[bx_i, j] and, when gx > 1, reduces the [gx, cols] partials with a second
// launch of the same kernel on one block row; the atomic variant adds each block's sum into out with atomicAdd.
// The shape is a function of (rows, cols) only, never of the GPU, so the tree's bits are the same on any GPU.

#include <algorithm>

#include "cuda/ops.h"
#include "cuda/ops_common.cuh"

namespace trainrr::cuda {
namespace {

constexpr unsigned kThreads = 256;         // per block; by is a power of two, as the tree needs
constexpr int64_t kRowsPerThread = 16;     // the rows a thread should add before the tree, at least
constexpr int64_t kMaxRowBlocks = 256;     // gx at most: bounds the partials and the second launch's work
constexpr int64_t kMaxColumnBlocks = 65535;  // gy at most (the grid's y limit); blocks then loop over tiles

struct Geometry {
  unsigned bx, by, gx, gy;
};

Geometry geometry(int64_t rows, int64_t cols) {
  Geometry g;
  g.bx = 1;
  while (g.bx < 32 && static_cast<int64_t>(g.bx) < cols) g.bx *= 2;  // 1 for a plain sum, 32 from 17 columns on
  g.by = kThreads / g.bx;
  const int64_t tiles = (cols + g.bx - 1) / g.bx;
  g.gy = static_cast<unsigned>(std::clamp<int64_t>(tiles, 1, kMaxColumnBlocks));
  const int64_t per_block = static_cast<int64_t>(g.by) * kRowsPerThread;
  g.gx = static_cast<unsigned>(std::clamp<int64_t>((rows + per_block - 1) / per_block, 1, kMaxRowBlocks));
  return g;
}

LaunchShape shape(unsigned gx, const Geometry& g) {
  LaunchShape s;
  s.grid_x = gx, s.grid_y = g.gy;
  s.block_x = g.bx, s.block_y = g.by;
  s.shared_bytes = sizeof(float) * g.bx * g.by;
  return s;
}

// out[bx_i * cols + j] = block bx_i's sum of column j (tree), or out[j] += it (atomic). See the top of the file.
template <bool kAtomic>
__global__ void column_partials_kernel(const float* x, int64_t rows, int64_t cols, float* out) {
  const auto s = detail::dynamic_shared<float>();  // [by][bx]
  const unsigned tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * by;
  for (int64_t tile = blockIdx.y; tile * bx < cols; tile += gridDim.y) {
    const int64_t j = tile * bx + tx;
    float acc = 0.0f;
    if (j < cols)
      for (int64_t r = static_cast<int64_t>(blockIdx.x) * by + ty; r < rows; r += row_step) acc += x[r * cols + j];
    s[ty * bx + tx] = acc;
    __syncthreads();
    for (unsigned w = by / 2; w > 0; w /= 2) {
      if (ty < w) s[ty * bx + tx] += s[(ty + w) * bx + tx];
      __syncthreads();
    }
    if (ty == 0 && j < cols) {
      if constexpr (kAtomic)
        atomicAdd(out + j, s[tx]);
      else
        out[static_cast<int64_t>(blockIdx.x) * cols + j] = s[tx];
    }
    __syncthreads();  // the next tile reuses s
  }
}

Status check(const char* op, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return detail::bad_argument(op, "negative shape");
  return {};
}

}  // namespace

const char* reduce_kernel_id(ReduceVariant v) { return v == ReduceVariant::tree ? kReduceTreeId : kReduceAtomicId; }

ReducePlan plan_column_sums(ReduceVariant v, int64_t rows, int64_t cols) {
  const Geometry g = geometry(std::max<int64_t>(rows, 0), std::max<int64_t>(cols, 1));
  ReducePlan p;
  p.partials = shape(g.gx, g);
  p.rows_per_thread = (std::max<int64_t>(rows, 0) + static_cast<int64_t>(g.gx) * g.by - 1) /
                      (static_cast<int64_t>(g.gx) * g.by);
  if (v == ReduceVariant::tree && g.gx > 1) {
    p.combines = true;
    p.combine = shape(1, g);
    p.workspace_bytes = sizeof(float) * g.gx * static_cast<size_t>(std::max<int64_t>(cols, 0));
  }
  return p;
}

Status column_sums_cuda_tree(const float* x, int64_t rows, int64_t cols, float* out, float* workspace,
                             void* stream) {
  if (Status s = check(kReduceTreeId, rows, cols); !s) return s;
  if (cols == 0) return {};
  const ReducePlan p = plan_column_sums(ReduceVariant::tree, rows, cols);
  const auto run = [&](const LaunchShape& l, const float* in, int64_t in_rows, float* dst) {
    return detail::launch("column_partials_kernel<tree>", column_partials_kernel<false>,
                          dim3(l.grid_x, l.grid_y), dim3(l.block_x, l.block_y), l.shared_bytes, stream, in,
                          in_rows, cols, dst);
  };
  if (!p.combines) return run(p.partials, x, rows, out);
  if (!workspace) return detail::bad_argument(kReduceTreeId, "needs a workspace of plan_column_sums' size");
  if (Status s = run(p.partials, x, rows, workspace); !s) return s;
  return run(p.combine, workspace, p.partials.grid_x, out);
}

Status column_sums_cuda_atomic(const float* x, int64_t rows, int64_t cols, float* out, void* stream) {
  if (Status s = check(kReduceAtomicId, rows, cols); !s) return s;
  if (cols == 0) return {};
  const ReducePlan p = plan_column_sums(ReduceVariant::atomic, rows, cols);
  if (cudaError_t e = cudaMemsetAsync(out, 0, sizeof(float) * cols, detail::as_stream(stream)); e != cudaSuccess)
    return Error{std::string(kReduceAtomicId) + ": clearing the output failed: " + cudaGetErrorName(e) + " (" +
                 cudaGetErrorString(e) + ")"};
  const LaunchShape& l = p.partials;
  return detail::launch("column_partials_kernel<atomic>", column_partials_kernel<true>,
                        dim3(l.grid_x, l.grid_y), dim3(l.block_x, l.block_y), l.shared_bytes, stream, x, rows,
                        cols, out);
}

Status column_sums(ReduceVariant v, const float* x, int64_t rows, int64_t cols, float* out, float* workspace,
                   void* stream) {
  return v == ReduceVariant::tree ? column_sums_cuda_tree(x, rows, cols, out, workspace, stream)
                                  : column_sums_cuda_atomic(x, rows, cols, out, stream);
}

}  // namespace trainrr::cuda
