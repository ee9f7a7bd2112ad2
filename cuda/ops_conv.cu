// Conv2D's layout steps on the GPU, in the layout of engine/kernels/conv_im2col.cc (NHWC input, HWIO filter):
// with them a convolution is im2col plus a matrix product (cuBLASLt), and its data gradient a product plus
// col2im.

#include "cuda/ops.h"
#include "cuda/ops_common.cuh"

namespace trainrr::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;

// The geometry of Conv2dArgs without its pointers, passed by value to the kernels.
struct ConvShape {
  int64_t h, w, c_in, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w;
  __host__ __device__ int64_t taps() const { return kh * kw * c_in; }
  __host__ __device__ int64_t pixels_out() const { return out_h * out_w; }
};

ConvShape shape_of(const Conv2dArgs& p) {
  return {p.h, p.w, p.c_in, p.kh, p.kw, p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.out_h, p.out_w};
}

// One thread per element of col: col[(img, oy, ox), (ky, kx, ci)] = x[img0 + img, iy, ix, ci], zero outside the
// image. Neighbouring threads write neighbouring col elements (and read neighbouring channels).
__global__ void im2col_kernel(ConvShape s, const float* x, int64_t images, float* col) {
  const int64_t taps = s.taps(), total = images * s.pixels_out() * taps;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t tap = e % taps, row = e / taps;
    const int64_t ci = tap % s.c_in, kx = (tap / s.c_in) % s.kw, ky = tap / (s.c_in * s.kw);
    const int64_t ox = row % s.out_w, oy = (row / s.out_w) % s.out_h, img = row / s.pixels_out();
    const int64_t iy = oy * s.stride_h + ky - s.pad_top, ix = ox * s.stride_w + kx - s.pad_left;
    const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
    col[e] = inside ? x[((img * s.h + iy) * s.w + ix) * s.c_in + ci] : 0.0f;
  }
}

// One thread per element of dx (img, iy, ix, ci): the col rows (oy, ox) whose receptive field holds the pixel,
// in increasing (oy, ox), add their tap (ky, kx) = (iy - oy * stride + pad, ix - ox * stride + pad) to a sum
// that starts at 0. The CPU's col2im walks the rows in that order, adding into zeros: the same additions per
// pixel in the same order, so the same bits, with no atomics.
__global__ void col2im_kernel(ConvShape s, const float* dcol, int64_t images, float* dx) {
  const int64_t taps = s.taps(), total = images * s.h * s.w * s.c_in;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t ci = e % s.c_in, ix = (e / s.c_in) % s.w, iy = (e / (s.c_in * s.w)) % s.h;
    const int64_t img = e / (s.c_in * s.w * s.h);
    const int64_t ty = iy + s.pad_top, tx = ix + s.pad_left;
    // oy with 0 <= ty - oy * stride_h < kh; likewise ox.
    const int64_t oy0 = ty - s.kh + 1 > 0 ? (ty - s.kh + 1 + s.stride_h - 1) / s.stride_h : 0;
    const int64_t oy1 = min(ty / s.stride_h, s.out_h - 1);
    const int64_t ox0 = tx - s.kw + 1 > 0 ? (tx - s.kw + 1 + s.stride_w - 1) / s.stride_w : 0;
    const int64_t ox1 = min(tx / s.stride_w, s.out_w - 1);
    const float* rows = dcol + img * s.pixels_out() * taps;
    float sum = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      const int64_t ky = ty - oy * s.stride_h;
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t kx = tx - ox * s.stride_w;
        sum += rows[(oy * s.out_w + ox) * taps + (ky * s.kw + kx) * s.c_in + ci];
      }
    }
    dx[e] = sum;
  }
}

// One thread per element of out, in out's order: neighbouring threads write neighbouring elements.
__global__ void transpose_kernel(const float* in, float* out, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t c = e / rows, r = e % rows;
    out[e] = in[r * cols + c];
  }
}

Status check_conv(const char* op, const Conv2dArgs& p, int64_t img0, int64_t images) {
  if (p.h <= 0 || p.w <= 0 || p.c_in <= 0 || p.kh <= 0 || p.kw <= 0 || p.stride_h <= 0 || p.stride_w <= 0 ||
      p.out_h < 0 || p.out_w < 0 || p.pad_top < 0 || p.pad_left < 0)
    return detail::bad_argument(op, "invalid convolution geometry");
  if (img0 < 0 || images < 0) return detail::bad_argument(op, "negative image range");
  return {};
}

}  // namespace

Status im2col(const Conv2dArgs& p, const float* x, int64_t img0, int64_t images, float* col, void* stream) {
  if (Status s = check_conv("im2col", p, img0, images); !s) return s;
  const ConvShape s = shape_of(p);
  const int64_t total = images * s.pixels_out() * s.taps();
  if (total == 0) return {};
  return detail::launch("im2col_kernel", im2col_kernel, detail::blocks_for(total), detail::kBlock, 0, stream,
                        s, x + img0 * p.h * p.w * p.c_in, images, col);
}

Status col2im(const Conv2dArgs& p, const float* dcol, int64_t img0, int64_t images, float* dx, void* stream) {
  if (Status s = check_conv("col2im", p, img0, images); !s) return s;
  const ConvShape s = shape_of(p);
  const int64_t total = images * p.h * p.w * p.c_in;
  if (total == 0) return {};
  return detail::launch("col2im_kernel", col2im_kernel, detail::blocks_for(total), detail::kBlock, 0, stream,
                        s, dcol, images, dx + img0 * p.h * p.w * p.c_in);
}

Status transpose(const float* in, float* out, int64_t rows, int64_t cols, void* stream) {
  if (rows < 0 || cols < 0) return detail::bad_argument("transpose", "negative size");
  if (rows * cols == 0) return {};
  return detail::launch("transpose_kernel", transpose_kernel, detail::blocks_for(rows * cols), detail::kBlock,
                        0, stream, in, out, rows, cols);
}

}  // namespace trainrr::cuda
