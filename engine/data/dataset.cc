#include "engine/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace trainrr {

Dataset take_rows(const Dataset& d, std::span<const uint32_t> rows) {
  const int64_t n = d.rows();
  const int64_t width = n == 0 ? shape_size(d.sample_shape()) : d.x.size() / n;
  TRAINRR_CHECK(static_cast<int64_t>(d.y.size()) == n, "labels and rows disagree");
  Dataset out;
  Shape shape = d.x.shape;
  if (shape.empty()) shape = {0};
  shape[0] = static_cast<int64_t>(rows.size());
  out.x = Tensor(shape);
  out.y.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    TRAINRR_CHECK(rows[i] < n, "row " + std::to_string(rows[i]) + " of " + std::to_string(n));
    std::memcpy(out.x.ptr() + static_cast<int64_t>(i) * width, d.x.ptr() + rows[i] * width,
                sizeof(float) * width);
    out.y[i] = d.y[rows[i]];
  }
  out.feature_names = d.feature_names;
  // A subset keeps the parent's class count: a split that misses the last class is still that task.
  out.num_classes = d.num_classes;
  return out;
}

int infer_num_classes(std::span<const float> labels) {
  // Beyond 2^24 a float no longer holds every integer, so such labels cannot be class indices.
  constexpr float kMaxLabel = 16777216.0f;
  if (labels.empty()) return 0;
  float largest = 0;
  for (float v : labels) {
    if (!(v >= 0 && v < kMaxLabel) || std::floor(v) != v) return 0;
    largest = std::max(largest, v);
  }
  return static_cast<int>(largest) + 1;
}

}  // namespace trainrr
