#pragma once
// Small helpers the layers share.

#include <algorithm>
#include <cstdint>

#include "engine/tensor.h"

namespace trainrr {

// dst = src, reusing dst's storage once it has grown to the batch size.
inline void copy_tensor(Tensor& dst, const Tensor& src) {
  dst.shape = src.shape;
  dst.data.assign(src.data.begin(), src.data.end());
}

// Gives t a shape, reusing its storage; the values are unspecified.
inline void reshape_storage(Tensor& t, Shape shape) {
  t.shape = std::move(shape);
  t.data.resize(shape_size(t.shape));
}

// y[r, j] += b[j] over a [rows, cols] block.
inline void add_bias(float* y, const float* b, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    for (int64_t j = 0; j < cols; ++j) yr[j] += b[j];
  }
}

}  // namespace trainrr
