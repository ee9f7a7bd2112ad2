#include "engine/kernels/conv_im2col.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kernels/matmul_blocked.h"
#include "engine/thread_pool.h"

namespace trainrr {
namespace {

constexpr int64_t kFilterChunkRows = 4096;  // im2col rows per partial filter gradient

int64_t pixels_out(const Conv2dArgs& p) { return p.out_h * p.out_w; }
int64_t taps(const Conv2dArgs& p) { return p.kh * p.kw * p.c_in; }

// A 1x1 convolution without stride or padding is already a matrix product over the input.
bool is_pointwise(const Conv2dArgs& p) {
  return p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 && p.pad_left == 0 &&
         p.out_h == p.h && p.out_w == p.w;
}

// dst[0:n] = src[0:n]. Runs are often a few floats (one input channel), where a call to memcpy, which GCC
// would otherwise make of the loop, costs more than the copy.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
void copy_run(const float* __restrict src, int64_t n, float* __restrict dst) {
  if (n >= 64) return (void)std::memcpy(dst, src, sizeof(float) * n);
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

// One task per image; a single image gets the whole pool inside its product instead. A small convolution
// runs on the calling thread. Tasks own their outputs, so where they run never changes a bit.
template <class F>
void for_images(int64_t tasks, const Conv2dArgs& p, ThreadPool& pool, const F& fn) {
  if (tasks == 1) return fn(0, &pool);
  const double work = static_cast<double>(p.n) * pixels_out(p) * taps(p) * p.c_out;
  if (pool.threads() == 1 || work < kInlineMultiplyAdds) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, nullptr);
    return;
  }
  pool.parallel_for(tasks, [&](int64_t t, int) { fn(t, nullptr); });
}

// The products' arithmetic: the blocked product of one instruction set, or the unfused one of the portable
// kernels.
struct Arith {
  Isa isa = Isa::generic;
  bool unfused = false;
  void gemm(const GemmArgs& g, ThreadPool* pool) const {
    if (unfused)
      gemm_blocked_unfused(g, pool);
    else
      gemm_blocked(isa, g, pool);
  }
};

void fwd(Arith arith, const Conv2dArgs& p, ThreadPool& pool) {
  if (p.n <= 0) return;
  const int64_t pix = pixels_out(p), k = taps(p);
  for_images(p.n, p, pool, [&](int64_t img, ThreadPool* inner) {
    thread_local std::vector<float> col;
    const float* a = p.x + img * p.h * p.w * p.c_in;
    if (!is_pointwise(p)) {
      col.resize(pix * k);
      conv2d_im2col(p, img, col.data());
      a = col.data();
    }
    GemmArgs g;
    g.m = pix, g.n = p.c_out, g.k = k;
    g.a = a, g.lda = k;
    g.b = p.filter, g.ldb = p.c_out;
    g.c = p.out + img * pix * p.c_out, g.ldc = p.c_out;
    arith.gemm(g, inner);
  });
}

void bwd_data(Arith arith, const Conv2dArgs& p, ThreadPool& pool) {
  if (p.n <= 0) return;
  const int64_t pix = pixels_out(p), k = taps(p);
  for_images(p.n, p, pool, [&](int64_t img, ThreadPool* inner) {
    thread_local std::vector<float> dcol;
    const bool direct = is_pointwise(p);
    if (!direct) dcol.resize(pix * k);
    // dcol = dy[img] [pix, c_out] * filter^T; filter is [k, c_out].
    GemmArgs g;
    g.trans_b = true;
    g.m = pix, g.n = k, g.k = p.c_out;
    g.a = p.dy + img * pix * p.c_out, g.lda = p.c_out;
    g.b = p.filter, g.ldb = p.c_out;
    g.c = direct ? p.out + img * p.h * p.w * p.c_in : dcol.data(), g.ldc = k;
    arith.gemm(g, inner);
    if (!direct) conv2d_col2im(p, dcol.data(), img);
  });
}

void bwd_filter(Arith arith, const Conv2dArgs& p, ThreadPool& pool) {
  const int64_t pix = pixels_out(p), k = taps(p), fsize = k * p.c_out;
  if (p.n <= 0 || pix <= 0) return (void)std::fill(p.out, p.out + fsize, 0.0f);
  // Chunks of whole images, sized from the shape alone so that the thread count cannot move a boundary.
  const int64_t per_chunk = std::max<int64_t>(1, kFilterChunkRows / pix);
  const int64_t chunks = (p.n + per_chunk - 1) / per_chunk;
  std::vector<float> partial(chunks > 1 ? chunks * fsize : 0);  // [chunk, k, c_out]
  for_images(chunks, p, pool, [&](int64_t chunk, ThreadPool* inner) {
    thread_local std::vector<float> col;
    const int64_t img0 = chunk * per_chunk, imgs = std::min(p.n, img0 + per_chunk) - img0;
    const float* a = p.x + img0 * p.h * p.w * p.c_in;
    if (!is_pointwise(p)) {
      col.resize(imgs * pix * k);
      for (int64_t i = 0; i < imgs; ++i) conv2d_im2col(p, img0 + i, col.data() + i * pix * k);
      a = col.data();
    }
    // dfilter [k, c_out] = col^T [k, rows] * dy [rows, c_out] over the chunk's rows.
    GemmArgs g;
    g.trans_a = true;
    g.m = k, g.n = p.c_out, g.k = imgs * pix;
    g.a = a, g.lda = k;
    g.b = p.dy + img0 * pix * p.c_out, g.ldb = p.c_out;
    g.c = chunks > 1 ? partial.data() + chunk * fsize : p.out, g.ldc = p.c_out;
    arith.gemm(g, inner);
  });
  if (chunks == 1) return;
  std::copy(partial.begin(), partial.begin() + fsize, p.out);
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t e = 0; e < fsize; ++e) p.out[e] += partial[c * fsize + e];
}

}  // namespace

// col[(oy * out_w + ox), (ky * kw + kx) * c_in + ci] = x[img, iy, ix, ci], zero outside the image.
// For one (ky) the kw taps of a row read kw * c_in consecutive input values when the window lies inside
// the image, so they are copied as one run (with few input channels a run per tap would be a few floats).
void conv2d_im2col(const Conv2dArgs& p, int64_t img, float* col) {
  const float* x = p.x + img * p.h * p.w * p.c_in;
  const int64_t run = p.kw * p.c_in;
  for (int64_t oy = 0; oy < p.out_h; ++oy)
    for (int64_t ox = 0; ox < p.out_w; ++ox) {
      float* row = col + (oy * p.out_w + ox) * taps(p);
      const int64_t ix0 = ox * p.stride_w - p.pad_left;
      const bool inside_x = ix0 >= 0 && ix0 + p.kw <= p.w;
      for (int64_t ky = 0; ky < p.kh; ++ky) {
        const int64_t iy = oy * p.stride_h + ky - p.pad_top;
        float* dst = row + ky * run;
        if (iy < 0 || iy >= p.h) {
          std::fill(dst, dst + run, 0.0f);
        } else if (inside_x) {
          copy_run(x + (iy * p.w + ix0) * p.c_in, run, dst);
        } else {
          for (int64_t kx = 0; kx < p.kw; ++kx) {
            const int64_t ix = ix0 + kx;
            float* d = dst + kx * p.c_in;
            if (ix < 0 || ix >= p.w)
              std::fill(d, d + p.c_in, 0.0f);
            else
              std::memcpy(d, x + (iy * p.w + ix) * p.c_in, sizeof(float) * p.c_in);
          }
        }
      }
    }
}

// dx[img] = the sum of dcol's rows scattered back to the pixels they were gathered from, in row order.
void conv2d_col2im(const Conv2dArgs& p, const float* dcol, int64_t img) {
  float* dx = p.out + img * p.h * p.w * p.c_in;
  std::fill(dx, dx + p.h * p.w * p.c_in, 0.0f);
  for (int64_t oy = 0; oy < p.out_h; ++oy)
    for (int64_t ox = 0; ox < p.out_w; ++ox) {
      const float* row = dcol + (oy * p.out_w + ox) * taps(p);
      for (int64_t ky = 0; ky < p.kh; ++ky) {
        const int64_t iy = oy * p.stride_h + ky - p.pad_top;
        if (iy < 0 || iy >= p.h) continue;
        for (int64_t kx = 0; kx < p.kw; ++kx) {
          const int64_t ix = ox * p.stride_w + kx - p.pad_left;
          if (ix < 0 || ix >= p.w) continue;
          const float* src = row + (ky * p.kw + kx) * p.c_in;
          float* d = dx + (iy * p.w + ix) * p.c_in;
          for (int64_t ci = 0; ci < p.c_in; ++ci) d[ci] += src[ci];
        }
      }
    }
}

void conv2d_fwd_im2col(Isa isa, const Conv2dArgs& p, ThreadPool& pool) { fwd({isa, false}, p, pool); }
void conv2d_bwd_data_im2col(Isa isa, const Conv2dArgs& p, ThreadPool& pool) { bwd_data({isa, false}, p, pool); }
void conv2d_bwd_filter_im2col(Isa isa, const Conv2dArgs& p, ThreadPool& pool) { bwd_filter({isa, false}, p, pool); }
void conv2d_fwd_portable(const Conv2dArgs& p, ThreadPool& pool) { fwd({Isa::generic, true}, p, pool); }
void conv2d_bwd_data_portable(const Conv2dArgs& p, ThreadPool& pool) { bwd_data({Isa::generic, true}, p, pool); }
void conv2d_bwd_filter_portable(const Conv2dArgs& p, ThreadPool& pool) { bwd_filter({Isa::generic, true}, p, pool); }

void conv2d_fwd_im2col_generic(const Conv2dArgs& p, ThreadPool& pool) { conv2d_fwd_im2col(Isa::generic, p, pool); }
void conv2d_fwd_im2col_avx2(const Conv2dArgs& p, ThreadPool& pool) { conv2d_fwd_im2col(Isa::avx2, p, pool); }
void conv2d_bwd_data_im2col_generic(const Conv2dArgs& p, ThreadPool& pool) {
  conv2d_bwd_data_im2col(Isa::generic, p, pool);
}
void conv2d_bwd_data_im2col_avx2(const Conv2dArgs& p, ThreadPool& pool) {
  conv2d_bwd_data_im2col(Isa::avx2, p, pool);
}
void conv2d_bwd_filter_im2col_generic(const Conv2dArgs& p, ThreadPool& pool) {
  conv2d_bwd_filter_im2col(Isa::generic, p, pool);
}
void conv2d_bwd_filter_im2col_avx2(const Conv2dArgs& p, ThreadPool& pool) {
  conv2d_bwd_filter_im2col(Isa::avx2, p, pool);
}
void conv2d_fwd_im2col_avx512(const Conv2dArgs& p, ThreadPool& pool) { conv2d_fwd_im2col(Isa::avx512, p, pool); }
void conv2d_bwd_data_im2col_avx512(const Conv2dArgs& p, ThreadPool& pool) {
  conv2d_bwd_data_im2col(Isa::avx512, p, pool);
}
void conv2d_bwd_filter_im2col_avx512(const Conv2dArgs& p, ThreadPool& pool) {
  conv2d_bwd_filter_im2col(Isa::avx512, p, pool);
}

}  // namespace trainrr
