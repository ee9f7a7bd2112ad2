#include "engine/kernels/reduce.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "engine/thread_pool.h"

namespace trainrr {
namespace {

constexpr int64_t kChunkElements = 16384;  // large enough to amortise a task, small enough to spread
constexpr int64_t kColBlock = 4096;        // columns per task: splitting columns never changes bits
constexpr int64_t kPairwiseLeaf = 16;      // rows summed sequentially at the leaves of the tree
constexpr int64_t kParallelElements = 1 << 17;  // below this, waking the pool costs more than it saves

// out[0:cols] = sum of rows [r0, r1) of x, in row order.
void sum_rows(const float* x, int64_t stride, int64_t r0, int64_t r1, int64_t cols, float* out) {
  if (cols == 1) {  // same additions, kept in a register rather than stored back through `out` each row
    float s = 0;
    for (int64_t i = r0; i < r1; ++i) s += x[i * stride];
    *out = s;
    return;
  }
  std::fill(out, out + cols, 0.0f);
  for (int64_t i = r0; i < r1; ++i) {
    const float* row = x + i * stride;
    for (int64_t j = 0; j < cols; ++j) out[j] += row[j];
  }
}

// out = tree sum of rows [r0, r1); scratch holds cols floats per level below this one.
void pairwise(const float* x, int64_t stride, int64_t r0, int64_t r1, int64_t cols, float* out, float* scratch) {
  if (r1 - r0 <= kPairwiseLeaf) return sum_rows(x, stride, r0, r1, cols, out);
  const int64_t mid = r0 + (r1 - r0) / 2;
  pairwise(x, stride, r0, mid, cols, out, scratch + cols);
  pairwise(x, stride, mid, r1, cols, scratch, scratch + cols);
  for (int64_t j = 0; j < cols; ++j) out[j] += scratch[j];
}

struct Chunking {
  int64_t chunk_rows, chunks, col_blocks;
};

Chunking chunking(const ReduceArgs& p) {
  Chunking c;
  c.chunk_rows = reduce_chunk_rows(p.rows, p.cols);
  c.chunks = (p.rows + c.chunk_rows - 1) / c.chunk_rows;
  c.col_blocks = (p.cols + kColBlock - 1) / kColBlock;
  return c;
}

// Calls fn(chunk, j0, j1) for every (row chunk, column block) on the pool.
template <class F>
void for_chunks(const Chunking& c, int64_t cols, ThreadPool& pool, const F& fn) {
  pool.parallel_for(c.chunks * c.col_blocks, [&](int64_t t, int) {
    const int64_t j0 = (t % c.col_blocks) * kColBlock;
    fn(t / c.col_blocks, j0, std::min(cols, j0 + kColBlock));
  });
}

}  // namespace

int64_t reduce_chunk_rows(int64_t rows, int64_t cols) {
  (void)rows;
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(cols, 1));
}

void reduce_pairwise(const ReduceArgs& p, ThreadPool&) {
  if (p.cols <= 0) return;
  int depth = 1;
  for (int64_t r = p.rows; r > kPairwiseLeaf; r = (r + 1) / 2) ++depth;
  std::vector<float> scratch(depth * p.cols);
  pairwise(p.x, p.cols, 0, p.rows, p.cols, p.out, scratch.data());
}

void reduce_chunked_threads(const ReduceArgs& p, ThreadPool& pool) {
  if (p.cols <= 0) return;
  const Chunking c = chunking(p);
  if (c.chunks <= 1) return sum_rows(p.x, p.cols, 0, p.rows, p.cols, p.out);
  std::vector<float> partial(c.chunks * p.cols);  // [chunk, cols]
  auto chunk_sum = [&](int64_t chunk, int64_t j0, int64_t j1) {
    const int64_t r0 = chunk * c.chunk_rows, r1 = std::min(p.rows, r0 + c.chunk_rows);
    sum_rows(p.x + j0, p.cols, r0, r1, j1 - j0, partial.data() + chunk * p.cols + j0);
  };
  auto combine = [&](int64_t b) {
    const int64_t j0 = b * kColBlock, j1 = std::min(p.cols, j0 + kColBlock);
    std::copy(partial.data() + j0, partial.data() + j1, p.out + j0);
    for (int64_t chunk = 1; chunk < c.chunks; ++chunk)
      for (int64_t j = j0; j < j1; ++j) p.out[j] += partial[chunk * p.cols + j];
  };
  if (pool.threads() == 1 || p.rows * p.cols < kParallelElements) {
    // Too small to wake the pool for: the same chunks, combined in the same order, on this thread.
    for (int64_t chunk = 0; chunk < c.chunks; ++chunk)
      for (int64_t j0 = 0; j0 < p.cols; j0 += kColBlock) chunk_sum(chunk, j0, std::min(p.cols, j0 + kColBlock));
    for (int64_t b = 0; b < c.col_blocks; ++b) combine(b);
    return;
  }
  for_chunks(c, p.cols, pool, chunk_sum);
  pool.parallel_for(c.col_blocks, [&](int64_t b, int) { combine(b); });
}

void reduce_atomic_threads(const ReduceArgs& p, ThreadPool& pool) {
  if (p.cols <= 0) return;
  const Chunking c = chunking(p);
  const int64_t tasks = c.chunks * c.col_blocks;
  std::fill(p.out, p.out + p.cols, 0.0f);
  auto add_into_out = [&](int64_t t, const float* local) {
    const int64_t j0 = (t % c.col_blocks) * kColBlock, j1 = std::min(p.cols, j0 + kColBlock);
    for (int64_t j = j0; j < j1; ++j) p.out[j] += local[j - j0];
  };
  auto partial_of = [&](int64_t t, float* local) {
    const int64_t chunk = t / c.col_blocks, j0 = (t % c.col_blocks) * kColBlock;
    const int64_t r0 = chunk * c.chunk_rows, r1 = std::min(p.rows, r0 + c.chunk_rows);
    sum_rows(p.x + j0, p.cols, r0, r1, std::min(p.cols, j0 + kColBlock) - j0, local);
  };
  if (p.order && static_cast<int64_t>(p.order->size()) == tasks) {
    // A forced order (replay): the same additions in the recorded sequence give the recorded bits.
    std::vector<float> partial(tasks * kColBlock);
    pool.parallel_for(tasks, [&](int64_t t, int) { partial_of(t, partial.data() + t * kColBlock); });
    for (uint32_t t : *p.order) add_into_out(t, partial.data() + t * kColBlock);
    return;
  }
  // Each partial is added into the output as soon as it is ready, under a lock: the order of the
  // additions, and so the rounding, is the order in which the threads finish (as atomicAdd on a GPU).
  std::mutex mu;
  if (p.order) p.order->clear();
  pool.parallel_for(tasks, [&](int64_t t, int) {
    float local[kColBlock];
    partial_of(t, local);
    std::lock_guard lock(mu);
    add_into_out(t, local);
    if (p.order) p.order->push_back(static_cast<uint32_t>(t));
  });
}

}  // namespace trainrr
