#include "engine/data/scaler.h"

#include <gtest/gtest.h>

#include <cmath>

namespace trainrr {
namespace {

TEST(DataScaler, StandardizeMatchesHandComputedValues) {
  // Feature 0: 1..4, mean 2.5, population std sqrt(1.25). Feature 1: constant, so scale 1 and values 0.
  Tensor x({4, 2}, {1, 10, 2, 10, 3, 10, 4, 10});
  Scaler s = Scaler::fit(ScaleKind::standardize, x);
  ASSERT_EQ(s.shift.size(), 2u);
  EXPECT_FLOAT_EQ(s.shift[0], 2.5f);
  EXPECT_FLOAT_EQ(s.scale[0], 1.118034f);
  EXPECT_FLOAT_EQ(s.shift[1], 10.0f);
  EXPECT_FLOAT_EQ(s.scale[1], 1.0f);
  s.apply(x);
  const float expected[] = {-1.3416408f, 0, -0.4472136f, 0, 0.4472136f, 0, 1.3416408f, 0};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(x[i], expected[i], 1e-6) << i;
}

TEST(DataScaler, StandardizeGivesZeroMeanAndUnitStdOnTrain) {
  const int64_t n = 1000, f = 3;
  Tensor x({n, f});
  for (int64_t r = 0; r < n; ++r) {
    x[r * f + 0] = static_cast<float>(r % 17) * 3.0f + 1000.0f;  // large mean, small spread
    x[r * f + 1] = std::sin(static_cast<float>(r)) * 1e-3f;
    x[r * f + 2] = static_cast<float>((r * 7919) % 1000) - 500.0f;
  }
  Scaler::fit(ScaleKind::standardize, x).apply(x);
  for (int64_t j = 0; j < f; ++j) {
    double s = 0, s2 = 0;
    for (int64_t r = 0; r < n; ++r) s += x[r * f + j];
    for (int64_t r = 0; r < n; ++r) s2 += (x[r * f + j] - s / n) * (x[r * f + j] - s / n);
    EXPECT_NEAR(s / n, 0.0, 1e-5) << j;
    EXPECT_NEAR(std::sqrt(s2 / n), 1.0, 1e-5) << j;
  }
}

TEST(DataScaler, MinMaxMapsTrainToTheUnitInterval) {
  Tensor x({3, 3}, {-2, 5, 1, 0, 5, 3, 6, 5, 2});
  Scaler s = Scaler::fit(ScaleKind::minmax, x);
  s.apply(x);
  const float expected[] = {0, 0, 0, 0.25f, 0, 1, 1, 0, 0.5f};
  for (int i = 0; i < 9; ++i) EXPECT_FLOAT_EQ(x[i], expected[i]) << i;
}

TEST(DataScaler, FittedOnTrainIsAppliedUnchangedToTest) {
  Tensor train({2, 1}, {0, 4});  // mean 2, std 2
  Tensor test({3, 1}, {2, 6, -2});
  Scaler s = Scaler::fit(ScaleKind::standardize, train);
  s.apply(test);
  EXPECT_FLOAT_EQ(test[0], 0.0f);
  EXPECT_FLOAT_EQ(test[1], 2.0f);
  EXPECT_FLOAT_EQ(test[2], -2.0f);

  Tensor test2({1, 1}, {8});
  Scaler m = Scaler::fit(ScaleKind::minmax, train);
  m.apply(test2);
  EXPECT_FLOAT_EQ(test2[0], 2.0f);  // outside [0, 1]: test data is not refitted
}

TEST(DataScaler, ImageSamplesAreScaledPerElement) {
  // Two 2x2x1 images; pixel (0,0) is 0 and 2, the others constant.
  Tensor x({2, 2, 2, 1}, {0, 1, 1, 1, 2, 1, 1, 1});
  Scaler s = Scaler::fit(ScaleKind::standardize, x);
  ASSERT_EQ(s.shift.size(), 4u);
  s.apply(x);
  EXPECT_EQ(x.shape, (Shape{2, 2, 2, 1}));
  EXPECT_EQ(x.data, (std::vector<float>{-1, 0, 0, 0, 1, 0, 0, 0}));
}

TEST(DataScaler, NoneLeavesDataUntouched) {
  Tensor x({2, 2}, {1, 2, 3, 4});
  Scaler s = Scaler::fit(ScaleKind::none, x);
  EXPECT_TRUE(s.shift.empty());
  s.apply(x);
  EXPECT_EQ(x.data, (std::vector<float>{1, 2, 3, 4}));
}

TEST(DataScaler, NoTrainingRowsGivesTheIdentity) {
  Scaler s = Scaler::fit(ScaleKind::standardize, Tensor({0, 2}));
  Tensor x({1, 2}, {3, -4});
  s.apply(x);
  EXPECT_EQ(x.data, (std::vector<float>{3, -4}));
}

}  // namespace
}  // namespace trainrr
