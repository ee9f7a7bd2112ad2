#include "engine/data/augment.h"

#include <gtest/gtest.h>

#include <cmath>

namespace trainrr {
namespace {

class CountingHooks : public Hooks {
 public:
  void rng_draw(RngDraw& draw) override { draws.push_back(draw); }
  std::vector<RngDraw> draws;
};

// The words a stream's first draw yields, computed from Philox directly rather than through RngStreams.
std::vector<uint32_t> first_words(uint64_t seed, const char* stream, size_t n) {
  std::vector<uint32_t> w(n);
  philox_words(stream_key(seed, stream), 0, w);
  return w;
}

Tensor numbered(Shape shape) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i + 1);
  return t;
}

TEST(DataAugment, NoiseIsOneDrawOfOneValuePerElement) {
  CountingHooks hooks;
  RngStreams rng(1, hooks);
  Tensor batch({4, 3, 3, 1});
  gaussian_noise(batch, 0.1f, rng);
  ASSERT_EQ(hooks.draws.size(), 1u);
  EXPECT_EQ(hooks.draws[0].site, "augment/noise");
  EXPECT_EQ(hooks.draws[0].stream, "augment/noise");
  EXPECT_EQ(hooks.draws[0].count, 36u);
}

TEST(DataAugment, NoiseHasTheRequestedStandardDeviation) {
  RngStreams rng(2, null_hooks());
  const int64_t n = 40000;
  Tensor batch({n, 1}, 3.0f);
  gaussian_noise(batch, 0.5f, rng);
  double s = 0, s2 = 0;
  for (float v : batch.data) s += v - 3.0;
  for (float v : batch.data) s2 += (v - 3.0 - s / n) * (v - 3.0 - s / n);
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(s2 / n), 0.5, 0.01);
}

TEST(DataAugment, FlipMirrorsExactlyTheSamplesWhoseWordHasItsTopBitSet) {
  const uint64_t seed = 5;
  const int64_t n = 16, h = 2, w = 3, c = 2;
  Tensor batch = numbered({n, h, w, c});
  const Tensor before = batch;
  CountingHooks hooks;
  RngStreams rng(seed, hooks);
  random_flip(batch, rng);
  ASSERT_EQ(hooks.draws.size(), 1u);
  EXPECT_EQ(hooks.draws[0].site, "augment/flip");
  EXPECT_EQ(hooks.draws[0].count, static_cast<uint64_t>(n));
  const std::vector<uint32_t> words = first_words(seed, "augment/flip", n);
  int flipped = 0;
  for (int64_t s = 0; s < n; ++s) {
    const bool flip = words[s] >= 0x80000000u;
    flipped += flip;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t k = 0; k < c; ++k) {
          const int64_t src_x = flip ? w - 1 - x : x;
          EXPECT_EQ(batch[((s * h + y) * w + x) * c + k], before[((s * h + y) * w + src_x) * c + k]);
        }
  }
  EXPECT_GT(flipped, 0);  // with this seed both cases occur, so both branches are checked
  EXPECT_LT(flipped, n);
}

TEST(DataAugment, ShiftMovesEachSampleByItsDrawnOffsets) {
  const uint64_t seed = 9;
  const int64_t n = 12, size = 7, max_shift = 2;
  Tensor batch({n, size, size, 1});
  for (int64_t s = 0; s < n; ++s) batch[(s * size + 3) * size + 3] = 1;  // one lit pixel in the centre
  CountingHooks hooks;
  RngStreams rng(seed, hooks);
  random_shift(batch, max_shift, rng);
  ASSERT_EQ(hooks.draws.size(), 1u);
  EXPECT_EQ(hooks.draws[0].site, "augment/shift");
  EXPECT_EQ(hooks.draws[0].count, static_cast<uint64_t>(2 * n));
  const std::vector<uint32_t> words = first_words(seed, "augment/shift", 2 * n);
  bool moved = false;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t dy = static_cast<int64_t>(static_cast<uint64_t>(words[2 * s]) * 5 >> 32) - 2;
    const int64_t dx = static_cast<int64_t>(static_cast<uint64_t>(words[2 * s + 1]) * 5 >> 32) - 2;
    moved |= dy != 0 || dx != 0;
    for (int64_t y = 0; y < size; ++y)
      for (int64_t x = 0; x < size; ++x)
        EXPECT_EQ(batch[(s * size + y) * size + x], (y == 3 + dy && x == 3 + dx) ? 1.0f : 0.0f)
            << "sample " << s << " dy " << dy << " dx " << dx;
  }
  EXPECT_TRUE(moved);
}

TEST(DataAugment, ShiftFillsWithZeroAndDropsWhatLeavesTheImage) {
  const uint64_t seed = 4;
  const int64_t n = 20, size = 4, c = 2;
  Tensor batch({n, size, size, c}, 1.0f);
  RngStreams rng(seed, null_hooks());
  random_shift(batch, 3, rng);
  const std::vector<uint32_t> words = first_words(seed, "augment/shift", 2 * n);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t dy = static_cast<int64_t>(static_cast<uint64_t>(words[2 * s]) * 7 >> 32) - 3;
    const int64_t dx = static_cast<int64_t>(static_cast<uint64_t>(words[2 * s + 1]) * 7 >> 32) - 3;
    double sum = 0;
    for (int64_t i = 0; i < size * size * c; ++i) sum += batch[s * size * size * c + i];
    EXPECT_EQ(sum, static_cast<double>((size - std::abs(dy)) * (size - std::abs(dx)) * c)) << "sample " << s;
  }
}

TEST(DataAugment, ZeroShiftLeavesImagesButStillDraws) {
  CountingHooks hooks;
  RngStreams rng(1, hooks);
  Tensor batch = numbered({3, 2, 2, 1});
  const Tensor before = batch;
  random_shift(batch, 0, rng);
  EXPECT_EQ(batch.data, before.data);
  EXPECT_EQ(hooks.draws.size(), 1u);
}

TEST(DataAugment, AugmentationStreamsDoNotShiftEachOther) {
  // The flip of a batch is the same whether or not noise was drawn first.
  Tensor a = numbered({8, 1, 4, 1}), b = a;
  RngStreams r1(3, null_hooks()), r2(3, null_hooks());
  Tensor scratch({100});
  gaussian_noise(scratch, 1.0f, r2);
  random_flip(a, r1);
  random_flip(b, r2);
  EXPECT_EQ(a.data, b.data);
}

}  // namespace
}  // namespace trainrr
