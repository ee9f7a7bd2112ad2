#include "engine/tensor.h"

#include <algorithm>
#include <stdexcept>

#include "engine/result.h"

namespace trainrr {

int64_t shape_size(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n))
      throw std::length_error("shape " + shape_str(shape) + " is too large");
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

Tensor::Tensor(Shape s, std::vector<float> values) : shape(std::move(s)), data(std::move(values)) {
  TRAINRR_CHECK(shape_size(shape) == size(), "values do not fill shape " + shape_str(shape));
}

void Tensor::fill(float v) { std::fill(data.begin(), data.end(), v); }

Tensor Tensor::reshaped(Shape s) const {
  TRAINRR_CHECK(shape_size(s) == size(), shape_str(shape) + " -> " + shape_str(s));
  return Tensor(std::move(s), data);
}

}  // namespace trainrr
