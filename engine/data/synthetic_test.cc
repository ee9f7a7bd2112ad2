#include "engine/data/synthetic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace trainrr {
namespace {

TEST(DataSynthetic, ShapeAndLabelsFollowTheArguments) {
  Dataset d = synthetic_dataset({8, 8, 1}, 10, 500, 1);
  EXPECT_EQ(d.x.shape, (Shape{500, 8, 8, 1}));
  EXPECT_EQ(d.y.size(), 500u);
  EXPECT_EQ(d.num_classes, 10);
  std::vector<int> counts(10);
  for (float v : d.y) {
    ASSERT_GE(v, 0);
    ASSERT_LT(v, 10);
    ASSERT_EQ(v, std::floor(v));
    ++counts[static_cast<int>(v)];
  }
  for (int c : counts) EXPECT_GT(c, 25);  // about 50 each
}

TEST(DataSynthetic, SameSeedGivesTheSameBytesAndAnotherSeedOtherBytes) {
  Dataset a = synthetic_dataset({5}, 3, 100, 7), b = synthetic_dataset({5}, 3, 100, 7);
  Dataset c = synthetic_dataset({5}, 3, 100, 8);
  EXPECT_EQ(a.x.data, b.x.data);
  EXPECT_EQ(a.y, b.y);
  EXPECT_NE(a.x.data, c.x.data);
  EXPECT_NE(a.y, c.y);
}

TEST(DataSynthetic, NoiseHasUnitStandardDeviationAroundAPatternInUnitRange) {
  // One class: every sample is the same pattern plus noise, so per-feature statistics expose both.
  const int64_t n = 20000, f = 6;
  Dataset d = synthetic_dataset({f}, 1, n, 3);
  for (int64_t j = 0; j < f; ++j) {
    double s = 0, s2 = 0;
    for (int64_t r = 0; r < n; ++r) s += d.x[r * f + j];
    const double mean = s / n;
    for (int64_t r = 0; r < n; ++r) s2 += (d.x[r * f + j] - mean) * (d.x[r * f + j] - mean);
    EXPECT_NEAR(std::sqrt(s2 / n), 1.0, 0.03) << "feature " << j;
    EXPECT_LE(std::abs(mean), 1.05) << "feature " << j;
  }
}

TEST(DataSynthetic, IsLearnableByNearestClassMean) {
  const int64_t n = 2000, f = 64;
  const int k = 10;
  Dataset d = synthetic_dataset({8, 8, 1}, k, n, 11);
  // Class means from the first half, then classify the second half by the nearest mean.
  std::vector<double> means(k * f, 0.0);
  std::vector<int> counts(k, 0);
  for (int64_t r = 0; r < n / 2; ++r) {
    const int c = static_cast<int>(d.y[r]);
    ++counts[c];
    for (int64_t j = 0; j < f; ++j) means[c * f + j] += d.x[r * f + j];
  }
  for (int c = 0; c < k; ++c)
    for (int64_t j = 0; j < f; ++j) means[c * f + j] /= std::max(counts[c], 1);
  int correct = 0;
  for (int64_t r = n / 2; r < n; ++r) {
    int best = -1;
    double best_d = std::numeric_limits<double>::infinity();
    for (int c = 0; c < k; ++c) {
      double dist = 0;
      for (int64_t j = 0; j < f; ++j) dist += (d.x[r * f + j] - means[c * f + j]) * (d.x[r * f + j] - means[c * f + j]);
      if (dist < best_d) best_d = dist, best = c;
    }
    correct += best == static_cast<int>(d.y[r]);
  }
  EXPECT_GT(correct, 0.9 * (n / 2));
}

}  // namespace
}  // namespace trainrr
