#include "engine/layers/max_pool2d.h"

#include <algorithm>

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

Tensor MaxPool2D::forward(const Tensor& x, Runtime& rt, bool /*training*/) {
  TRAINRR_CHECK(x.rank() == 4 && x.dim(1) == h_ && x.dim(2) == w_ && x.dim(3) == c_,
                name() + " got " + shape_str(x.shape));
  const int64_t batch = x.dim(0);
  x_shape_ = x.shape;
  Tensor y({batch, out_h_, out_w_, c_});
  argmax_.resize(y.size());
  const float* xp = x.ptr();
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t oy = 0; oy < out_h_; ++oy) {
      // Padded cells never win: the window is clipped to the input (same padding can only clip edges,
      // and every window keeps at least one input cell).
      const int64_t y0 = std::max<int64_t>(oy * strides_[0] - pad_top_, 0);
      const int64_t y1 = std::min<int64_t>(oy * strides_[0] - pad_top_ + pool_size_[0], h_);
      for (int64_t ox = 0; ox < out_w_; ++ox) {
        const int64_t x0 = std::max<int64_t>(ox * strides_[1] - pad_left_, 0);
        const int64_t x1 = std::min<int64_t>(ox * strides_[1] - pad_left_ + pool_size_[1], w_);
        const int64_t o = ((n * out_h_ + oy) * out_w_ + ox) * c_;
        float* yo = y.ptr() + o;
        int64_t* ao = argmax_.data() + o;
        const int64_t first = ((n * h_ + y0) * w_ + x0) * c_;
        for (int64_t c = 0; c < c_; ++c) yo[c] = xp[first + c], ao[c] = first + c;
        for (int64_t iy = y0; iy < y1; ++iy)
          for (int64_t ix = x0; ix < x1; ++ix) {
            const int64_t base = ((n * h_ + iy) * w_ + ix) * c_;
            for (int64_t c = 0; c < c_; ++c)
              if (xp[base + c] > yo[c]) yo[c] = xp[base + c], ao[c] = base + c;
          }
      }
    }
  rt.probe(probe_fwd_, Phase::forward, y, ProbeLevel::op);
  rt.probe(probe_out_, Phase::forward, y, ProbeLevel::layer);
  return y;
}

Tensor MaxPool2D::backward(const Tensor& dy, Runtime& rt) {
  TRAINRR_CHECK(dy.size() == static_cast<int64_t>(argmax_.size()), name() + " got dy " + shape_str(dy.shape));
  Tensor dx(x_shape_);
  // Overlapping windows (stride < pool) can pick the same cell twice, hence +=.
  for (size_t i = 0; i < argmax_.size(); ++i) dx[argmax_[i]] += dy[i];
  rt.probe(probe_bwd_, Phase::backward, dx, ProbeLevel::op);
  rt.probe(probe_dx_, Phase::backward, dx, ProbeLevel::layer);
  return dx;
}

}  // namespace trainrr
