#include "engine/layers/max_pool2d.h"

#include <gtest/gtest.h>

#include "engine/layers/layer_test_util.h"
#include "engine/layers/layers.h"

namespace trainrr {
namespace {

using testing::random_tensor;
using testing::TestRuntime;

TEST(LayerMaxPool2D, TwoByTwoPoolMatchesHandComputedValues) {
  TestRuntime t;
  MaxPool2D p("max_pooling2d_1", {2, 2}, {2, 2}, Padding::valid);
  ASSERT_EQ(p.build({4, 4, 1}, t.rt).value(), (Shape{2, 2, 1}));
  Tensor x({1, 4, 4, 1});
  for (int i = 0; i < 16; ++i) x[i] = static_cast<float>((i * 7) % 16);  // 0 7 14 5 / 12 3 10 1 / ...
  const Tensor y = p.forward(x, t.rt, false);
  // Windows: {0,7,12,3} {14,5,10,1} {8,15,4,11} {6,13,2,9}.
  EXPECT_EQ(y.data, (std::vector<float>{12, 14, 15, 13}));
  const Tensor dx = p.backward(Tensor({1, 2, 2, 1}, {1, 2, 3, 4}), t.rt);
  std::vector<float> want(16, 0);
  want[4] = 1, want[2] = 2, want[9] = 3, want[11] = 4;
  EXPECT_EQ(dx.data, want);
}

TEST(LayerMaxPool2D, TiesSendTheGradientToTheFirstMaximum) {
  TestRuntime t;
  MaxPool2D p("max_pooling2d_1", {2, 2}, {2, 2}, Padding::valid);
  ASSERT_TRUE(p.build({2, 2, 2}, t.rt).ok());
  // Channel 0 all equal; channel 1 ties between positions 1 and 3.
  p.forward(Tensor({1, 2, 2, 2}, {5, 0, 5, 9, 5, 1, 5, 9}), t.rt, true);
  const Tensor dx = p.backward(Tensor({1, 1, 1, 2}, {1, 1}), t.rt);
  EXPECT_EQ(dx.data, (std::vector<float>{1, 0, 0, 1, 0, 0, 0, 0}));
}

TEST(LayerMaxPool2D, SamePaddingNeverPicksAPaddedCell) {
  TestRuntime t;
  MaxPool2D p("max_pooling2d_1", {2, 2}, {2, 2}, Padding::same);
  ASSERT_EQ(p.build({3, 3, 1}, t.rt).value(), (Shape{2, 2, 1}));
  const Tensor y = p.forward(Tensor({1, 3, 3, 1}, {-1, -2, -3, -4, -5, -6, -7, -8, -9}), t.rt, false);
  EXPECT_EQ(y.data, (std::vector<float>{-1, -3, -7, -9}));
}

TEST(LayerMaxPool2D, StridesDefaultToThePoolSize) {
  TestRuntime t;
  LayerSpec spec;
  spec.type = "MaxPool2D";
  spec.name = "pool";
  spec.pool_size = {3, 3};
  auto layer = make_layer(spec);
  ASSERT_TRUE(layer.ok());
  EXPECT_EQ((*layer)->build({9, 7, 2}, t.rt).value(), (Shape{3, 2, 2}));
}

TEST(LayerMaxPool2D, PoolLargerThanInputIsAnErrorNamingBothShapes) {
  TestRuntime t;
  MaxPool2D p("max_pooling2d_3", {2, 2}, {2, 2}, Padding::valid);
  auto r = p.build({1, 1, 64}, t.rt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "max_pooling2d_3: pool size (2, 2) is larger than its input (1, 1, 64) with padding 'valid'");
  auto r2 = p.build({64}, t.rt);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().message,
            "max_pooling2d_3 expects input of rank 3 per sample (height, width, channels), got (64,)");
}

struct PoolCase {
  const char* name;
  std::array<int64_t, 2> pool, strides;
  Padding padding;
};

class GradMaxPool2D : public ::testing::TestWithParam<PoolCase> {};

TEST_P(GradMaxPool2D, InputGradientMatchesFiniteDifferences) {
  const PoolCase& k = GetParam();
  TestRuntime t;
  MaxPool2D p("max_pooling2d_1", k.pool, k.strides, k.padding);
  ASSERT_TRUE(p.build({5, 5, 2}, t.rt).ok());
  // Random values are at least ~1e-2 apart here, far more than the step, so no window changes its argmax.
  testing::expect_layer_gradients(p, random_tensor({2, 5, 5, 2}, 31, -3, 3), t, {.max_checks = 100});
}

INSTANTIATE_TEST_SUITE_P(Grad, GradMaxPool2D,
                         ::testing::Values(PoolCase{"valid2x2", {2, 2}, {2, 2}, Padding::valid},
                                           PoolCase{"overlapping3x3stride2", {3, 3}, {2, 2}, Padding::valid},
                                           PoolCase{"same2x2", {2, 2}, {2, 2}, Padding::same}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace trainrr
