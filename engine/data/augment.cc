#include "engine/data/augment.h"

#include <algorithm>
#include <vector>

#include "engine/result.h"

namespace trainrr {
namespace {

void check_nhwc(const Tensor& batch) {
  TRAINRR_CHECK(batch.rank() == 4, "image augmentation needs NHWC, got " + shape_str(batch.shape));
}

}  // namespace

void gaussian_noise(Tensor& batch, float stddev, RngStreams& rng) {
  std::vector<float> noise(batch.data.size());
  rng.normal("augment/noise", "augment/noise", noise, 0.0f, stddev);
  for (size_t i = 0; i < noise.size(); ++i) batch.data[i] += noise[i];
}

void random_flip(Tensor& batch, RngStreams& rng) {
  check_nhwc(batch);
  const int64_t n = batch.dim(0), h = batch.dim(1), w = batch.dim(2), c = batch.dim(3);
  std::vector<uint32_t> words(n);
  rng.words("augment/flip", "augment/flip", words);
  for (int64_t s = 0; s < n; ++s) {
    if (!(words[s] >> 31)) continue;
    for (int64_t y = 0; y < h; ++y) {
      float* row = batch.ptr() + ((s * h + y) * w) * c;
      for (int64_t x = 0; x < w / 2; ++x) std::swap_ranges(row + x * c, row + (x + 1) * c, row + (w - 1 - x) * c);
    }
  }
}

void random_shift(Tensor& batch, int64_t max_shift, RngStreams& rng) {
  check_nhwc(batch);
  TRAINRR_CHECK(max_shift >= 0 && max_shift < (int64_t{1} << 31), "max_shift " + std::to_string(max_shift));
  const int64_t n = batch.dim(0), h = batch.dim(1), w = batch.dim(2), c = batch.dim(3);
  std::vector<uint32_t> words(2 * n);
  rng.words("augment/shift", "augment/shift", words);
  const auto span = static_cast<uint64_t>(2 * max_shift + 1);
  const int64_t sample = h * w * c;
  std::vector<float> src(sample);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t dy = static_cast<int64_t>((words[2 * s] * span) >> 32) - max_shift;
    const int64_t dx = static_cast<int64_t>((words[2 * s + 1] * span) >> 32) - max_shift;
    if (dy == 0 && dx == 0) continue;
    float* img = batch.ptr() + s * sample;
    std::copy(img, img + sample, src.begin());
    std::fill(img, img + sample, 0.0f);
    // Destination rows/columns whose source (y - dy, x - dx) lies inside the image.
    const int64_t y0 = std::max<int64_t>(0, dy), y1 = std::min(h, h + dy);
    const int64_t x0 = std::max<int64_t>(0, dx), x1 = std::min(w, w + dx);
    for (int64_t y = y0; y < y1; ++y)
      if (x0 < x1)
        std::copy(src.begin() + ((y - dy) * w + (x0 - dx)) * c, src.begin() + ((y - dy) * w + (x1 - dx)) * c,
                  img + (y * w + x0) * c);
  }
}

}  // namespace trainrr
