#include "engine/kernels/reference.h"

#include <cstring>

// Unfused multiply-adds in the whole file, whatever -march says, so that the references give the same
// bits on every CPU (lambdas included, which a per-function attribute would miss).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace trainrr {

void matmul_reference(const MatmulArgs& p, ThreadPool&) {
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      float acc = 0;
      for (int64_t l = 0; l < p.k; ++l) {
        const float a = p.trans_a ? p.a[l * p.m + i] : p.a[i * p.k + l];
        const float b = p.trans_b ? p.b[j * p.k + l] : p.b[l * p.n + j];
        acc += a * b;
      }
      float& c = p.c[i * p.n + j];
      c = p.accumulate ? c + acc : acc;
    }
  }
}

void reduce_sequential(const ReduceArgs& p, ThreadPool&) {
  for (int64_t j = 0; j < p.cols; ++j) p.out[j] = 0;
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) p.out[j] += p.x[i * p.cols + j];
}

namespace {
// Calls f(n, oy, ox, ky, kx, iy, ix) for every filter tap that lands inside the input.
template <class F>
void for_each_tap(const Conv2dArgs& p, F f) {
  for (int64_t n = 0; n < p.n; ++n)
    for (int64_t oy = 0; oy < p.out_h; ++oy)
      for (int64_t ox = 0; ox < p.out_w; ++ox)
        for (int64_t ky = 0; ky < p.kh; ++ky) {
          const int64_t iy = oy * p.stride_h + ky - p.pad_top;
          if (iy < 0 || iy >= p.h) continue;
          for (int64_t kx = 0; kx < p.kw; ++kx) {
            const int64_t ix = ox * p.stride_w + kx - p.pad_left;
            if (ix < 0 || ix >= p.w) continue;
            f(n, oy, ox, ky, kx, iy, ix);
          }
        }
}
}  // namespace

void conv2d_fwd_direct(const Conv2dArgs& p, ThreadPool&) {
  std::memset(p.out, 0, sizeof(float) * p.n * p.out_h * p.out_w * p.c_out);
  for_each_tap(p, [&](int64_t n, int64_t oy, int64_t ox, int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
    const float* x = p.x + ((n * p.h + iy) * p.w + ix) * p.c_in;
    const float* f = p.filter + (ky * p.kw + kx) * p.c_in * p.c_out;
    float* y = p.out + ((n * p.out_h + oy) * p.out_w + ox) * p.c_out;
    for (int64_t ci = 0; ci < p.c_in; ++ci)
      for (int64_t co = 0; co < p.c_out; ++co) y[co] += x[ci] * f[ci * p.c_out + co];
  });
}

void conv2d_bwd_data_direct(const Conv2dArgs& p, ThreadPool&) {
  std::memset(p.out, 0, sizeof(float) * p.n * p.h * p.w * p.c_in);
  for_each_tap(p, [&](int64_t n, int64_t oy, int64_t ox, int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
    float* dx = p.out + ((n * p.h + iy) * p.w + ix) * p.c_in;
    const float* f = p.filter + (ky * p.kw + kx) * p.c_in * p.c_out;
    const float* dy = p.dy + ((n * p.out_h + oy) * p.out_w + ox) * p.c_out;
    for (int64_t ci = 0; ci < p.c_in; ++ci)
      for (int64_t co = 0; co < p.c_out; ++co) dx[ci] += dy[co] * f[ci * p.c_out + co];
  });
}

void conv2d_bwd_filter_direct(const Conv2dArgs& p, ThreadPool&) {
  std::memset(p.out, 0, sizeof(float) * p.kh * p.kw * p.c_in * p.c_out);
  for_each_tap(p, [&](int64_t n, int64_t oy, int64_t ox, int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
    const float* x = p.x + ((n * p.h + iy) * p.w + ix) * p.c_in;
    float* df = p.out + (ky * p.kw + kx) * p.c_in * p.c_out;
    const float* dy = p.dy + ((n * p.out_h + oy) * p.out_w + ox) * p.c_out;
    for (int64_t ci = 0; ci < p.c_in; ++ci)
      for (int64_t co = 0; co < p.c_out; ++co) df[ci * p.c_out + co] += x[ci] * dy[co];
  });
}

}  // namespace trainrr
