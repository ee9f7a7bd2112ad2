#include "engine/data/scaler.h"

#include <algorithm>
#include <cmath>

#include "engine/result.h"

namespace trainrr {
namespace {

int64_t features_of(const Tensor& x) {
  TRAINRR_CHECK(x.rank() >= 1, "scaling needs a [rows, ...] tensor");
  return shape_size(Shape(x.shape.begin() + 1, x.shape.end()));
}

}  // namespace

Scaler Scaler::fit(ScaleKind kind, const Tensor& x) {
  Scaler s;
  s.kind = kind;
  if (kind == ScaleKind::none) return s;
  const int64_t rows = x.dim(0), f = features_of(x);
  // With no training rows there is nothing to learn from: scale by the identity rather than by NaN.
  s.shift.assign(f, 0.0f);
  s.scale.assign(f, 1.0f);
  if (rows == 0) return s;

  if (kind == ScaleKind::standardize) {
    std::vector<double> mean(f, 0.0), var(f, 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) mean[j] += x[r * f + j];
    for (double& m : mean) m /= static_cast<double>(rows);
    // Two passes: the textbook one-pass formula loses the variance of features with a large mean.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) {
        const double d = x[r * f + j] - mean[j];
        var[j] += d * d;
      }
    for (int64_t j = 0; j < f; ++j) {
      const double sd = std::sqrt(var[j] / static_cast<double>(rows));
      s.shift[j] = static_cast<float>(mean[j]);
      s.scale[j] = sd == 0 ? 1.0f : static_cast<float>(sd);
    }
  } else {
    std::vector<float> lo(x.ptr(), x.ptr() + f), hi(lo);
    for (int64_t r = 1; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) {
        lo[j] = std::min(lo[j], x[r * f + j]);
        hi[j] = std::max(hi[j], x[r * f + j]);
      }
    for (int64_t j = 0; j < f; ++j) {
      const double range = static_cast<double>(hi[j]) - lo[j];
      s.shift[j] = lo[j];
      s.scale[j] = range == 0 ? 1.0f : static_cast<float>(range);
    }
  }
  return s;
}

void Scaler::apply(Tensor& x) const {
  if (kind == ScaleKind::none) return;
  const int64_t f = features_of(x);
  TRAINRR_CHECK(f == static_cast<int64_t>(shift.size()),
                "scaler fitted on " + std::to_string(shift.size()) + " features, applied to " + std::to_string(f));
  const int64_t rows = x.dim(0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < f; ++j) {
      float& v = x[r * f + j];
      v = static_cast<float>((static_cast<double>(v) - shift[j]) / scale[j]);
    }
}

}  // namespace trainrr
