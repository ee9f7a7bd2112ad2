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

// The two layout steps, one image at a time (the CUDA backend's own im2col and col2im are tested against them):
// col[(oy * out_w + ox), (ky * kw + kx) * c_in + ci] = x[img, iy, ix, ci] (p.x), zero outside the image;
// and dx[img] (p.out) = the sum of dcol's rows scattered back to the pixels they were gathered from, in row
// order (so each pixel adds its contributions in increasing (oy, ox)), starting from 0.
void conv2d_im2col(const Conv2dArgs& p, int64_t img, float* col);
void conv2d_col2im(const Conv2dArgs& p, const float* dcol, int64_t img);

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
