#include "engine/kernels/matmul_blocked.h"

#include <algorithm>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine/kernels/fp_contract.h"
#include "engine/thread_pool.h"

namespace trainrr {
namespace {

// Blocking. An MR x kc panel of A and a kc x NR panel of B fit in L1 together; the kMc x kc block of A
// a task sweeps fits in L2. kMc and kNcTask are multiples of every MR and NR below.
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 96;        // rows of C per task
constexpr int64_t kNcTask = 256;   // columns of C per task
constexpr int64_t kNc = 4096;      // columns of B packed at once
constexpr int64_t kPanelsPerPackTask = 8;

template <class F>
void for_tasks(ThreadPool* pool, int64_t tasks, const F& fn) {
  if (!pool || pool->threads() == 1 || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  pool->parallel_for(tasks, [&](int64_t t, int) { fn(t); });
}

// dst[l * MR + r] = A(i0 + r, l0 + l) for l < kc, zero for rows past m.
template <int MR>
void pack_a(const GemmArgs& g, int64_t i0, int64_t l0, int64_t kc, float* dst) {
  const int64_t rows = std::min<int64_t>(MR, g.m - i0);
  if (g.trans_a) {
    for (int64_t l = 0; l < kc; ++l) {
      const float* src = g.a + (l0 + l) * g.lda + i0;
      float* d = dst + l * MR;
      for (int64_t r = 0; r < rows; ++r) d[r] = src[r];
      for (int64_t r = rows; r < MR; ++r) d[r] = 0;
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = g.a + (i0 + r) * g.lda + l0;
      for (int64_t l = 0; l < kc; ++l) dst[l * MR + r] = src[l];
    }
    for (int64_t r = rows; r < MR; ++r)
      for (int64_t l = 0; l < kc; ++l) dst[l * MR + r] = 0;
  }
}

// dst[l * NR + j] = B(l0 + l, j0 + j) for l < kc, zero for columns past n.
template <int NR>
void pack_b(const GemmArgs& g, int64_t j0, int64_t l0, int64_t kc, float* dst) {
  const int64_t cols = std::min<int64_t>(NR, g.n - j0);
  if (!g.trans_b) {
    for (int64_t l = 0; l < kc; ++l) {
      const float* src = g.b + (l0 + l) * g.ldb + j0;
      float* d = dst + l * NR;
      for (int64_t j = 0; j < cols; ++j) d[j] = src[j];
      for (int64_t j = cols; j < NR; ++j) d[j] = 0;
    }
  } else {
    for (int64_t j = 0; j < cols; ++j) {
      const float* src = g.b + (j0 + j) * g.ldb + l0;
      for (int64_t l = 0; l < kc; ++l) dst[l * NR + j] = src[l];
    }
    for (int64_t j = cols; j < NR; ++j)
      for (int64_t l = 0; l < kc; ++l) dst[l * NR + j] = 0;
  }
}

// Micro-kernels: C[0:MR, 0:NR] (row stride ldc) = (load_c ? C : 0) + Apanel * Bpanel, k in order.
struct GenericKernel {
  static constexpr int mr = 4, nr = 8;  // 8 SSE accumulators on the baseline x86-64 target
  // Unfused on every CPU and with any -march: otherwise the generic build would silently become the FMA one.
  TRAINRR_NO_FP_CONTRACT static void run(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                         bool load_c) {
    TRAINRR_NO_FP_CONTRACT_BODY
    float acc[mr][nr];
    for (int r = 0; r < mr; ++r)
      for (int j = 0; j < nr; ++j) acc[r][j] = load_c ? c[r * ldc + j] : 0.0f;
    for (int64_t l = 0; l < kc; ++l, a += mr, b += nr)
      for (int r = 0; r < mr; ++r)
        for (int j = 0; j < nr; ++j) acc[r][j] += a[r] * b[j];
    for (int r = 0; r < mr; ++r)
      for (int j = 0; j < nr; ++j) c[r * ldc + j] = acc[r][j];
  }
};

#if defined(__x86_64__)
// kFused: one fused multiply-add per product (one rounding), the AVX2 and AVX-512 kernels. Unfused: the
// generic kernel's arithmetic (each product rounded, then added, k in order), 8 or 16 columns at a time: every
// element of C gets exactly the generic kernel's bits, which is what the portable kernels run on any CPU that
// has the registers. (The engine is built with -ffp-contract=off: the compiler fuses nothing by itself.)
template <bool kFused>
struct Avx2Tile {
  static constexpr int mr = 6, nr = 16;  // 12 of the 16 ymm registers accumulate
  TRAINRR_NO_FP_CONTRACT __attribute__((target("avx2,fma"))) static void run(int64_t kc, const float* a,
                                                                             const float* b, float* c,
                                                                             int64_t ldc, bool load_c) {
    TRAINRR_NO_FP_CONTRACT_BODY
    __m256 acc[mr][2];
#pragma GCC unroll 6
    for (int r = 0; r < mr; ++r) {
      acc[r][0] = load_c ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
      acc[r][1] = load_c ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int64_t l = 0; l < kc; ++l, a += mr, b += nr) {
      const __m256 b0 = _mm256_loadu_ps(b);
      const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int r = 0; r < mr; ++r) {
        const __m256 ar = _mm256_broadcast_ss(a + r);
        if constexpr (kFused) {
          acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
        } else {
          acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_mul_ps(ar, b0));
          acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_mul_ps(ar, b1));
        }
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; ++r) {
      _mm256_storeu_ps(c + r * ldc, acc[r][0]);
      _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
  }
};

template <bool kFused>
struct Avx512Tile {
  static constexpr int mr = 12, nr = 32;  // 24 of the 32 zmm registers accumulate
  TRAINRR_NO_FP_CONTRACT __attribute__((target("avx512f,fma"))) static void run(int64_t kc, const float* a,
                                                                                const float* b, float* c,
                                                                                int64_t ldc, bool load_c) {
    TRAINRR_NO_FP_CONTRACT_BODY
    __m512 acc[mr][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; ++r) {
      acc[r][0] = load_c ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
      acc[r][1] = load_c ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int64_t l = 0; l < kc; ++l, a += mr, b += nr) {
      const __m512 b0 = _mm512_loadu_ps(b);
      const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
      for (int r = 0; r < mr; ++r) {
        const __m512 ar = _mm512_set1_ps(a[r]);
        if constexpr (kFused) {
          acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        } else {
          acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_mul_ps(ar, b0));
          acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_mul_ps(ar, b1));
        }
      }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; ++r) {
      _mm512_storeu_ps(c + r * ldc, acc[r][0]);
      _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
    }
  }
};

using Avx2Kernel = Avx2Tile<true>;
using Avx512Kernel = Avx512Tile<true>;
using Avx2UnfusedKernel = Avx2Tile<false>;
using Avx512UnfusedKernel = Avx512Tile<false>;
#endif

// A tile cut by the edge of C goes through a full-size buffer, so the micro-kernel never needs masks.
template <class K>
void edge_tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t rows, int64_t cols,
               bool load_c) {
  float tile[K::mr * K::nr] = {};
  if (load_c)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) tile[r * K::nr + j] = c[r * ldc + j];
  K::run(kc, a, b, tile, K::nr, load_c);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = tile[r * K::nr + j];
}

template <class K>
void gemm_impl(const GemmArgs& g, ThreadPool* pool) {
  constexpr int64_t MR = K::mr, NR = K::nr;
  static_assert(kMc % MR == 0 && kNcTask % NR == 0 && kNc % kNcTask == 0);
  if (g.m <= 0 || g.n <= 0) return;
  if (static_cast<double>(g.m) * g.n * g.k < kInlineMultiplyAdds) pool = nullptr;
  if (g.k <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, 0.0f);
    return;
  }
  // Per calling thread: kernels running inside a parallel loop each pack into their own buffers.
  thread_local std::vector<float> packed_a, packed_b;
  const int64_t m_panels = (g.m + MR - 1) / MR;
  for (int64_t jc = 0; jc < g.n; jc += kNc) {
    const int64_t nc = std::min(kNc, g.n - jc);
    const int64_t n_panels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < g.k; pc += kKc) {
      const int64_t kc = std::min(kKc, g.k - pc);
      packed_a.resize(m_panels * MR * kc);
      packed_b.resize(n_panels * NR * kc);
      float* pa = packed_a.data();
      float* pb = packed_b.data();
      const int64_t a_tasks = (m_panels + kPanelsPerPackTask - 1) / kPanelsPerPackTask;
      const int64_t b_tasks = (n_panels + kPanelsPerPackTask - 1) / kPanelsPerPackTask;
      for_tasks(pool, a_tasks + b_tasks, [&](int64_t t) {
        if (t < a_tasks) {
          const int64_t end = std::min(m_panels, (t + 1) * kPanelsPerPackTask);
          for (int64_t p = t * kPanelsPerPackTask; p < end; ++p) pack_a<MR>(g, p * MR, pc, kc, pa + p * MR * kc);
        } else {
          t -= a_tasks;
          const int64_t end = std::min(n_panels, (t + 1) * kPanelsPerPackTask);
          for (int64_t q = t * kPanelsPerPackTask; q < end; ++q)
            pack_b<NR>(g, jc + q * NR, pc, kc, pb + q * NR * kc);
        }
      });
      // Each task owns a rectangle of C, so which thread runs it cannot change any bit.
      const bool load_c = g.accumulate || pc > 0;
      const int64_t col_blocks = (nc + kNcTask - 1) / kNcTask;
      const int64_t row_blocks = (g.m + kMc - 1) / kMc;
      for_tasks(pool, row_blocks * col_blocks, [&](int64_t t) {
        const int64_t i_begin = (t / col_blocks) * kMc, i_end = std::min(g.m, i_begin + kMc);
        const int64_t j_begin = (t % col_blocks) * kNcTask, j_end = std::min(nc, j_begin + kNcTask);
        for (int64_t j = j_begin; j < j_end; j += NR) {
          const float* bp = pb + (j / NR) * NR * kc;
          const int64_t cols = std::min(NR, nc - j);
          for (int64_t i = i_begin; i < i_end; i += MR) {
            const float* ap = pa + (i / MR) * MR * kc;
            const int64_t rows = std::min(MR, g.m - i);
            float* ct = g.c + i * g.ldc + jc + j;
            if (rows == MR && cols == NR)
              K::run(kc, ap, bp, ct, g.ldc, load_c);
            else
              edge_tile<K>(kc, ap, bp, ct, g.ldc, rows, cols, load_c);
          }
        }
      });
    }
  }
}

}  // namespace

GemmArgs gemm_args(const MatmulArgs& p) {
  GemmArgs g;
  g.trans_a = p.trans_a;
  g.trans_b = p.trans_b;
  g.m = p.m, g.n = p.n, g.k = p.k;
  g.a = p.a, g.lda = p.trans_a ? p.m : p.k;
  g.b = p.b, g.ldb = p.trans_b ? p.k : p.n;
  g.c = p.c, g.ldc = p.n;
  g.accumulate = p.accumulate;
  return g;
}

void gemm_blocked(Isa isa, const GemmArgs& g, ThreadPool* pool) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::avx512: return gemm_impl<Avx512Kernel>(g, pool);
    case Isa::avx2: return gemm_impl<Avx2Kernel>(g, pool);
#else
    case Isa::avx512:
    case Isa::avx2: TRAINRR_CHECK(false, "no SIMD micro-kernel on this architecture");
#endif
    case Isa::generic: return gemm_impl<GenericKernel>(g, pool);
  }
}

Isa portable_isa() {
  static const Isa isa = [] {
    auto r = runtime_isa();
    return r ? *r : Isa::generic;
  }();
  return isa;
}

void gemm_blocked_unfused(const GemmArgs& g, ThreadPool* pool) {
  switch (portable_isa()) {
#if defined(__x86_64__)
    case Isa::avx512: return gemm_impl<Avx512UnfusedKernel>(g, pool);
    case Isa::avx2: return gemm_impl<Avx2UnfusedKernel>(g, pool);
#else
    case Isa::avx512:
    case Isa::avx2:
#endif
    case Isa::generic: return gemm_impl<GenericKernel>(g, pool);
  }
}

void matmul_portable(const MatmulArgs& p, ThreadPool& pool) { gemm_blocked_unfused(gemm_args(p), &pool); }

void matmul_blocked_generic(const MatmulArgs& p, ThreadPool& pool) { gemm_blocked(Isa::generic, gemm_args(p), &pool); }
void matmul_blocked_avx2(const MatmulArgs& p, ThreadPool& pool) { gemm_blocked(Isa::avx2, gemm_args(p), &pool); }
void matmul_blocked_avx512(const MatmulArgs& p, ThreadPool& pool) { gemm_blocked(Isa::avx512, gemm_args(p), &pool); }

}  // namespace trainrr
