#include "engine/data/synthetic.h"

#include <vector>

#include "engine/random.h"

namespace trainrr {
namespace {

// Draws straight from Philox with keys of its own: generating a data set is not a choice of the run, so it
// neither goes through the hooks nor shifts any of the run's streams.
std::vector<uint32_t> words(uint64_t seed, const char* name, int64_t n) {
  std::vector<uint32_t> w(static_cast<size_t>(n));
  philox_words(stream_key(seed, name), 0, w);
  return w;
}

}  // namespace

Dataset synthetic_dataset(const Shape& sample_shape, int classes, int64_t count, uint64_t seed) {
  TRAINRR_CHECK(classes >= 1 && count >= 0, "classes " + std::to_string(classes));
  const int64_t features = shape_size(sample_shape);
  TRAINRR_CHECK(features >= 0, shape_str(sample_shape));

  std::vector<float> means(static_cast<size_t>(classes * features));
  const std::vector<uint32_t> mw = words(seed, "synthetic/means", classes * features);
  for (size_t i = 0; i < means.size(); ++i) means[i] = 2.0f * uniform01(mw[i]) - 1.0f;

  Dataset d;
  d.num_classes = classes;
  d.y.resize(static_cast<size_t>(count));
  const std::vector<uint32_t> lw = words(seed, "synthetic/labels", count);
  for (int64_t i = 0; i < count; ++i)
    d.y[i] = static_cast<float>((static_cast<uint64_t>(lw[i]) * static_cast<uint64_t>(classes)) >> 32);

  Shape shape = {count};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  d.x = Tensor(shape);
  // Noise as the sum of a word's four bytes (Irwin-Hall, close to normal): only integer arithmetic and one
  // exact scaling, so no libm function whose last bit may differ between machines touches the data.
  // Four uniform bytes have mean 4 * 127.5 and variance 4 * (256^2 - 1) / 12.
  const float kNoiseScale = 1.0f / 147.80166f;  // 1 / sqrt(4 * 65535 / 12)
  std::vector<uint32_t> nw(static_cast<size_t>(features));
  const uint64_t noise_key = stream_key(seed, "synthetic/noise");
  for (int64_t r = 0; r < count; ++r) {
    philox_words(noise_key, static_cast<uint64_t>(r * features), nw);
    const float* mean = means.data() + static_cast<int64_t>(d.y[r]) * features;
    float* row = d.x.ptr() + r * features;
    for (int64_t j = 0; j < features; ++j) {
      const uint32_t w = nw[j];
      const int sum = static_cast<int>((w & 0xFF) + ((w >> 8) & 0xFF) + ((w >> 16) & 0xFF) + (w >> 24));
      row[j] = mean[j] + static_cast<float>(sum - 510) * kNoiseScale;
    }
  }
  return d;
}

}  // namespace trainrr
