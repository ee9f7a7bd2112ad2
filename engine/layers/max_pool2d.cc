#include "engine/layers/max_pool2d.h"

#include <algorithm>
#include <climits>

#include "engine/layers/layer_util.h"

namespace trainrr {

MaxPool2D::MaxPool2D(std::string name, std::array<int64_t, 2> pool_size, std::array<int64_t, 2> strides,
                     Padding padding)
    : Layer(std::move(name)), pool_size_(pool_size), strides_(strides), padding_(padding) {
  probe_fwd_ = this->name() + "/max_pool.fwd:out";
  probe_bwd_ = this->name() + "/max_pool.bwd:out";
  probe_out_ = this->name() + ":out";
  probe_dx_ = this->name() + ":dx";
}

Result<Shape> MaxPool2D::build(const Shape& input, Runtime& /*rt*/) {
  if (input.size() != 3)
    return Error{name() + " expects input of rank 3 per sample (height, width, channels), got " +
                 shape_str(input)};
  for (int64_t d : input)
    if (d <= 0) return Error{name() + " expects a non-empty input, got " + shape_str(input)};
  if (padding_ == Padding::valid && (pool_size_[0] > input[0] || pool_size_[1] > input[1]))
    return Error{name() + ": pool size " + shape_str({pool_size_[0], pool_size_[1]}) +
                 " is larger than its input " + shape_str(input) + " with padding 'valid'"};
  h_ = input[0], w_ = input[1], c_ = input[2];
  const Window1d wy = window_1d(h_, pool_size_[0], strides_[0], padding_);
  const Window1d wx = window_1d(w_, pool_size_[1], strides_[1], padding_);
  out_h_ = wy.out, out_w_ = wx.out, pad_top_ = wy.pad_before, pad_left_ = wx.pad_before;
  return Shape{out_h_, out_w_, c_};
}

namespace {

// yo[c], ao[c] = the maximum over the window rows [y0, y1) x columns [x0, x1) of channel c of one image
// (row stride row_len), and where it is. Cells in row-major window order; a later cell wins only when
// strictly greater, so ties go to the first. Both stores are unconditional, so the channel loop vectorises.
void window_max(const float* __restrict xi, float* __restrict yo, int32_t* __restrict ao, int32_t channels,
                int32_t row_len, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  const int32_t first = static_cast<int32_t>(y0 * row_len + x0 * channels);
  for (int32_t c = 0; c < channels; ++c) yo[c] = xi[first + c], ao[c] = first + c;
  for (int64_t iy = y0; iy < y1; ++iy)
    for (int64_t ix = iy == y0 ? x0 + 1 : x0; ix < x1; ++ix) {
      const int32_t base = static_cast<int32_t>(iy * row_len + ix * channels);
      for (int32_t c = 0; c < channels; ++c) {
        float best = yo[c];
        int32_t at = ao[c];
        const float v = xi[base + c];
        if (v > best) best = v, at = base + c;
        yo[c] = best;
        ao[c] = at;
      }
    }
}

}  // namespace

void max_pool_forward_host(const PoolGeometry& g, const float* x, float* y, int32_t* argmax, ThreadPool* pool) {
  const int64_t image = g.h * g.w * g.c;
  // Tasks of whole output rows: each output is written by one task alone.
  for_row_chunks(pool, g.n * g.out_h, g.out_w * g.c, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t n = row / g.out_h, oy = row % g.out_h;
      const float* xi = x + n * image;
      // Padded cells never win: the window is clipped to the input (same padding can only clip edges,
      // and every window keeps at least one input cell).
      const int64_t y0 = std::max<int64_t>(oy * g.stride_h - g.pad_top, 0);
      const int64_t y1 = std::min<int64_t>(oy * g.stride_h - g.pad_top + g.pool_h, g.h);
      for (int64_t ox = 0; ox < g.out_w; ++ox) {
        const int64_t x0 = std::max<int64_t>(ox * g.stride_w - g.pad_left, 0);
        const int64_t x1 = std::min<int64_t>(ox * g.stride_w - g.pad_left + g.pool_w, g.w);
        const int64_t o = (row * g.out_w + ox) * g.c;
        window_max(xi, y + o, argmax + o, static_cast<int32_t>(g.c), static_cast<int32_t>(g.w * g.c), y0, y1, x0,
                   x1);
      }
    }
  });
}

void max_pool_backward_host(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx,
                            ThreadPool* pool) {
  const int64_t image = g.h * g.w * g.c, outputs = g.out_h * g.out_w * g.c;
  // Tasks of whole images: an output only sends its gradient into its own image, so the additions into
  // each cell happen in output order whatever the split.
  for_row_chunks(pool, g.n, image, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float* __restrict dxi = dx + n * image;
      const float* __restrict dyi = dy + n * outputs;
      const int32_t* __restrict ai = argmax + n * outputs;
      std::fill(dxi, dxi + image, 0.0f);  // cells that were no window's maximum get no gradient
      // Overlapping windows (stride < pool) can pick the same cell twice, hence +=.
      for (int64_t i = 0; i < outputs; ++i) dxi[ai[i]] += dyi[i];
    }
  });
}

PoolGeometry MaxPool2D::geometry(int64_t batch) const {
  PoolGeometry g;
  g.n = batch, g.h = h_, g.w = w_, g.c = c_;
  g.pool_h = pool_size_[0], g.pool_w = pool_size_[1], g.stride_h = strides_[0], g.stride_w = strides_[1];
  g.pad_top = pad_top_, g.pad_left = pad_left_, g.out_h = out_h_, g.out_w = out_w_;
  return g;
}

const Tensor& MaxPool2D::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == 4 && x.dim(1) == h_ && x.dim(2) == w_ && x.dim(3) == c_,
                name() + " got " + shape_str(x.shape));
  const int64_t batch = x.dim(0);
  const int64_t image = h_ * w_ * c_;
  TRAINRR_CHECK(image <= INT32_MAX, name() + ": an image of " + shape_str(x.shape) + " is too large");
  x_shape_ = x.shape;
  const PoolGeometry g = geometry(batch);
  Tensor& y = y_;
  if (rt.device) {
    device_reshape(*rt.device, y, {batch, out_h_, out_w_, c_});
    argmax_device_.resize(*rt.device, static_cast<size_t>(y.size()) * sizeof(int32_t));
    rt.device->max_pool_forward(g, x.dptr(), y.dptr(), static_cast<int32_t*>(argmax_device_.get()));
  } else {
    reshape_storage(y, {batch, out_h_, out_w_, c_});  // every output is written below
    argmax_.resize(y.size());
    max_pool_forward_host(g, x.ptr(), y.ptr(), argmax_.data(), &rt.pool());
  }
  rt.probe(probe_fwd_, Phase::forward, y, ProbeLevel::op);
  rt.probe_unchanged(probe_out_, Phase::forward, y, ProbeLevel::layer);
  return y;
}

const Tensor& MaxPool2D::backward(const Tensor& dy, Runtime& rt) {
  TRAINRR_CHECK(dy.shape == y_.shape, name() + " got dy " + shape_str(dy.shape));
  if (!needs_input_grad()) return no_input_grad();
  Tensor& dx = dx_;
  const PoolGeometry g = geometry(x_shape_[0]);
  if (rt.device) {
    device_reshape(*rt.device, dx, x_shape_);
    rt.device->max_pool_backward(g, dy.dptr(), static_cast<const int32_t*>(argmax_device_.get()), dx.dptr());
  } else {
    reshape_storage(dx, x_shape_);
    max_pool_backward_host(g, dy.ptr(), argmax_.data(), dx.ptr(), &rt.pool());
  }
  rt.probe(probe_bwd_, Phase::backward, dx, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
