#pragma once
// Cache-blocked matrix products. A and B are packed into panels (transposes are absorbed by the packing)
// and a register-blocked micro-kernel computes one MR x NR tile of C at a time.
//
// Every element of C is a single chain of multiply-adds over k in increasing order, starting from C
// (accumulate) or from 0. Blocking and thread count therefore never change the bits; only the
// instruction set does: the generic build multiplies then adds (two roundings, like the reference),
// the AVX2 and AVX-512 builds fuse them (one rounding). That difference is what TRAINRR_ISA exposes.

#include <cstdint>

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

// A matrix product with explicit leading dimensions, for callers that multiply sub-matrices.
// A(i, l) = trans_a ? a[l * lda + i] : a[i * lda + l]; B(l, j) = trans_b ? b[j * ldb + l] : b[l * ldb + j].
struct GemmArgs {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;  // C(i, j) = c[i * ldc + j]
  int64_t ldc = 0;
  bool accumulate = false;
};

// The strides of contiguous operands.
GemmArgs gemm_args(const MatmulArgs& p);

// Multiply-adds below which a product runs on the calling thread: waking the pool (tens of microseconds on a
// loaded machine) would cost more than a second thread saves.
constexpr double kInlineMultiplyAdds = 1 << 18;

// Runs the blocked product with the micro-kernel of `isa` (which the CPU must support). `pool` may be
// null: everything then runs on the calling thread (kernels that are already parallel over something else).
// Products under kInlineMultiplyAdds run on the calling thread too.
void gemm_blocked(Isa isa, const GemmArgs& g, ThreadPool* pool);

// The generic micro-kernel's arithmetic (multiply, round, add, round; k in order) with the widest SIMD
// registers this run allows (portable_isa()): the same bits as Isa::generic on every x86-64 CPU, faster.
void gemm_blocked_unfused(const GemmArgs& g, ThreadPool* pool);
// runtime_isa(), read once: the instruction set the portable kernels run with (their bits do not depend on it).
Isa portable_isa();

void matmul_blocked_generic(const MatmulArgs& p, ThreadPool& pool);
// f32_matmul__cpu_portable: gemm_blocked_unfused.
void matmul_portable(const MatmulArgs& p, ThreadPool& pool);
void matmul_blocked_avx2(const MatmulArgs& p, ThreadPool& pool);
void matmul_blocked_avx512(const MatmulArgs& p, ThreadPool& pool);

}  // namespace trainrr
