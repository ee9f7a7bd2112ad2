#include "engine/kernels/matmul_splitk.h"

#include <algorithm>
#include <vector>

#include "engine/kernels/matmul_blocked.h"
#include "engine/thread_pool.h"

namespace trainrr {
namespace {

void splitk(Isa isa, const MatmulArgs& p, ThreadPool& pool) {
  const int64_t parts = std::min<int64_t>(pool.threads(), std::max<int64_t>(p.k, 1));
  if (parts <= 1) return gemm_blocked(isa, gemm_args(p), nullptr);
  const int64_t mn = p.m * p.n;
  std::vector<float> partial(parts * mn);  // partial[part]: [m, n]
  pool.parallel_for(parts, [&](int64_t part, int) {
    const int64_t k0 = p.k * part / parts, k1 = p.k * (part + 1) / parts;
    GemmArgs g = gemm_args(p);
    g.k = k1 - k0;
    g.a = p.trans_a ? p.a + k0 * g.lda : p.a + k0;
    g.b = p.trans_b ? p.b + k0 : p.b + k0 * g.ldb;
    g.c = partial.data() + part * mn;
    g.ldc = p.n;
    g.accumulate = false;
    gemm_blocked(isa, g, nullptr);
  });
  // Parts are added in part order whichever thread finished first.
  constexpr int64_t kChunk = 4096;
  pool.parallel_for((mn + kChunk - 1) / kChunk, [&](int64_t t, int) {
    const int64_t end = std::min(mn, (t + 1) * kChunk);
    for (int64_t e = t * kChunk; e < end; ++e) {
      float s = p.accumulate ? p.c[e] : 0.0f;
      for (int64_t part = 0; part < parts; ++part) s += partial[part * mn + e];
      p.c[e] = s;
    }
  });
}

}  // namespace

void matmul_splitk_threads_generic(const MatmulArgs& p, ThreadPool& pool) { splitk(Isa::generic, p, pool); }
void matmul_splitk_threads_avx2(const MatmulArgs& p, ThreadPool& pool) { splitk(Isa::avx2, p, pool); }

}  // namespace trainrr
