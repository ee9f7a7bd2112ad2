#pragma once
// Float32, contiguous, row-major tensors on the CPU. Images are NHWC, as in Keras' channels_last.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace trainrr {

using Shape = std::vector<int64_t>;

int64_t shape_size(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(32, 8, 8, 1)"

struct Tensor {
  Shape shape;
  std::vector<float> data;  // shape_size(shape) values

  Tensor() = default;
  explicit Tensor(Shape s, float fill = 0.0f) : shape(std::move(s)), data(shape_size(shape), fill) {}
  Tensor(Shape s, std::vector<float> values);

  int64_t size() const { return static_cast<int64_t>(data.size()); }
  int rank() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  float& operator[](int64_t i) { return data[i]; }
  float operator[](int64_t i) const { return data[i]; }
  void fill(float v);
  // Same values, another shape of the same size.
  Tensor reshaped(Shape s) const;
};

}  // namespace trainrr
