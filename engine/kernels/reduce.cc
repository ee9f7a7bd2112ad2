#include "engine/kernels/reduce.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "engine/thread_pool.h"

namespace trainrr {
namespace {

constexpr int64_t kChunkElements = 16384;  // large enough to amortise a task, small enough to spread
constexpr int64_t kColBlock = 4096;        // columns per task: splitting columns never changes bits
constexpr int64_t kPairwiseLeaf = 16;      // rows summed sequentially at the leaves of the tree

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
  for_chunks(c, p.cols, pool, [&](int64_t chunk, int64_t j0, int64_t j1) {
    const int64_t r0 = chunk * c.chunk_rows, r1 = std::min(p.rows, r0 + c.chunk_rows);
    sum_rows(p.x + j0, p.cols, r0, r1, j1 - j0, partial.data() + chunk * p.cols + j0);
  });
  pool.parallel_for(c.col_blocks, [&](int64_t b, int) {
    const int64_t j0 = b * kColBlock, j1 = std::min(p.cols, j0 + kColBlock);
    std::copy(partial.data() + j0, partial.data() + j1, p.out + j0);
    for (int64_t chunk = 1; chunk < c.chunks; ++chunk)
      for (int64_t j = j0; j < j1; ++j) p.out[j] += partial[chunk * p.cols + j];
  });
}

void reduce_atomic_threads(const ReduceArgs& p, ThreadPool& pool) {
  if (p.cols <= 0) return;
  const Chunking c = chunking(p);
  std::fill(p.out, p.out + p.cols, 0.0f);
  for_chunks(c, p.cols, pool, [&](int64_t chunk, int64_t j0, int64_t j1) {
    const int64_t r0 = chunk * c.chunk_rows, r1 = std::min(p.rows, r0 + c.chunk_rows);
    float local[kColBlock];
    sum_rows(p.x + j0, p.cols, r0, r1, j1 - j0, local);
    // Compare-and-swap adds, in whatever order the chunks finish.
    for (int64_t j = j0; j < j1; ++j) std::atomic_ref<float>(p.out[j]).fetch_add(local[j - j0]);
  });
}

}  // namespace trainrr
