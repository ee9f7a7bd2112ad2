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

const Tensor& MaxPool2D::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == 4 && x.dim(1) == h_ && x.dim(2) == w_ && x.dim(3) == c_,
                name() + " got " + shape_str(x.shape));
  const int64_t batch = x.dim(0);
  const int64_t image = h_ * w_ * c_;
  TRAINRR_CHECK(image <= INT32_MAX, name() + ": an image of " + shape_str(x.shape) + " is too large");
  x_shape_ = x.shape;
  reshape_storage(y_, {batch, out_h_, out_w_, c_});  // every output is written below
  Tensor& y = y_;
  argmax_.resize(y.size());
  // Tasks of whole output rows: each output is written by one task alone.
  for_row_chunks(&rt.pool(), batch * out_h_, out_w_ * c_, [&](int64_t row0, int64_t row1) {
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t n = row / out_h_, oy = row % out_h_;
      const float* xi = x.ptr() + n * image;
      // Padded cells never win: the window is clipped to the input (same padding can only clip edges,
      // and every window keeps at least one input cell).
      const int64_t y0 = std::max<int64_t>(oy * strides_[0] - pad_top_, 0);
      const int64_t y1 = std::min<int64_t>(oy * strides_[0] - pad_top_ + pool_size_[0], h_);
      for (int64_t ox = 0; ox < out_w_; ++ox) {
        const int64_t x0 = std::max<int64_t>(ox * strides_[1] - pad_left_, 0);
        const int64_t x1 = std::min<int64_t>(ox * strides_[1] - pad_left_ + pool_size_[1], w_);
        const int64_t o = (row * out_w_ + ox) * c_;
        window_max(xi, y.ptr() + o, argmax_.data() + o, static_cast<int32_t>(c_), static_cast<int32_t>(w_ * c_),
                   y0, y1, x0, x1);
      }
    }
  });
  rt.probe(probe_fwd_, Phase::forward, y, ProbeLevel::op);
  rt.probe_unchanged(probe_out_, Phase::forward, y, ProbeLevel::layer);
  return y;
}

const Tensor& MaxPool2D::backward(const Tensor& dy, Runtime& rt) {
  TRAINRR_CHECK(dy.size() == static_cast<int64_t>(argmax_.size()), name() + " got dy " + shape_str(dy.shape));
  if (!needs_input_grad()) return no_input_grad();
  reshape_storage(dx_, x_shape_);
  Tensor& dx = dx_;
  const int64_t batch = x_shape_[0], image = h_ * w_ * c_, outputs = out_h_ * out_w_ * c_;
  // Tasks of whole images: an output only sends its gradient into its own image, so the additions into
  // each cell happen in output order whatever the split.
  for_row_chunks(&rt.pool(), batch, image, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float* __restrict dxi = dx.ptr() + n * image;
      const float* __restrict dyi = dy.ptr() + n * outputs;
      const int32_t* __restrict ai = argmax_.data() + n * outputs;
      std::fill(dxi, dxi + image, 0.0f);  // cells that were no window's maximum get no gradient
      // Overlapping windows (stride < pool) can pick the same cell twice, hence +=.
      for (int64_t i = 0; i < outputs; ++i) dxi[ai[i]] += dyi[i];
    }
  });
  rt.probe(probe_bwd_, Phase::backward, dx, ProbeLevel::op);
  rt.probe_unchanged(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
