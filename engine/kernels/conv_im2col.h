#pragma once
// Convolutions as matrix products: im2col turns each image's receptive fields into rows
// [out_h * out_w, kh * kw * c_in], the blocked product of one instruction set does the arithmetic,
// col2im scatters the data gradient back. Work is split over images (forward, data gradient) or over
// fixed chunks of images whose partial filter gradients are added in chunk order, so the bits depend
// on the instruction set only, never on the thread count.

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

void conv2d_fwd_im2col(Isa isa, const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_data_im2col(Isa isa, const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_filter_im2col(Isa isa, const Conv2dArgs& p, ThreadPool& pool);

// ConvFn entry points per instruction set.
void conv2d_fwd_im2col_generic(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_fwd_im2col_avx2(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_data_im2col_generic(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_data_im2col_avx2(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_filter_im2col_generic(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_filter_im2col_avx2(const Conv2dArgs& p, ThreadPool& pool);
// The AVX-512 micro-kernel computes the same fused chains as the AVX2 one: the same bits, faster.
void conv2d_fwd_im2col_avx512(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_data_im2col_avx512(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_filter_im2col_avx512(const Conv2dArgs& p, ThreadPool& pool);

// The portable kernels: im2col with the unfused product (gemm_blocked_unfused), the bits of the generic ones
// on every x86-64 CPU.
void conv2d_fwd_portable(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_data_portable(const Conv2dArgs& p, ThreadPool& pool);
void conv2d_bwd_filter_portable(const Conv2dArgs& p, ThreadPool& pool);

}  // namespace trainrr
