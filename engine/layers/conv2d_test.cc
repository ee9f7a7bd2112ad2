#include "engine/layers/conv2d.h"

#include <gtest/gtest.h>

#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::random_tensor;
using testing::TestRuntime;

TEST(LayerConv2D, TwoByTwoKernelMatchesHandComputedValues) {
  TestRuntime t;
  Conv2D c("conv2d_1", 1, {2, 2}, {1, 1}, Padding::valid, Activation::linear, Initializer::zeros, true);
  ASSERT_EQ(c.build({3, 3, 1}, t.rt).value(), (Shape{2, 2, 1}));
  c.params()[0]->value = Tensor({2, 2, 1, 1}, {1, 2, 3, 4});
  c.params()[1]->value = Tensor({1}, {1});
  const Tensor y = c.forward(Tensor({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9}), t.rt, false);
  // [1 2; 4 5] . [1 2; 3 4] = 1 + 4 + 12 + 20 = 37, plus the bias; the others likewise.
  EXPECT_EQ(y.data, (std::vector<float>{38, 48, 68, 78}));
}

TEST(LayerConv2D, SamePaddingPadsEvenlyAroundTheInput) {
  TestRuntime t;
  Conv2D c("conv2d_1", 1, {3, 3}, {1, 1}, Padding::same, Activation::linear, Initializer::zeros, false);
  ASSERT_EQ(c.build({3, 3, 1}, t.rt).value(), (Shape{3, 3, 1}));
  c.params()[0]->value.fill(1.0f);
  const Tensor y = c.forward(Tensor({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9}), t.rt, false);
  // Each output is the sum of the 3x3 neighbourhood inside the image.
  EXPECT_EQ(y.data, (std::vector<float>{12, 21, 16, 27, 45, 33, 24, 39, 28}));
}

TEST(LayerConv2D, WindowGeometryFollowsKeras) {
  EXPECT_EQ(window_1d(5, 3, 2, Padding::valid).out, 2);
  EXPECT_EQ(window_1d(5, 3, 1, Padding::valid).out, 3);
  // same: out = ceil(in / stride); pad_total = max((out - 1) * stride + k - in, 0); pad_before = pad_total
  // / 2.
  EXPECT_EQ(window_1d(4, 3, 2, Padding::same).out, 2);
  EXPECT_EQ(window_1d(4, 3, 2, Padding::same).pad_before, 0);  // pad_total 1 goes after
  EXPECT_EQ(window_1d(5, 3, 2, Padding::same).out, 3);
  EXPECT_EQ(window_1d(5, 3, 2, Padding::same).pad_before, 1);
  EXPECT_EQ(window_1d(7, 4, 1, Padding::same).pad_before, 1);  // pad_total 3
  EXPECT_EQ(window_1d(6, 1, 2, Padding::same).pad_before, 0);
}

// An independent, direct evaluation of the convolution definition, for a strided same-padded case.
TEST(LayerConv2D, StridedSamePaddingMatchesTheDefinition) {
  TestRuntime t;
  Conv2D c("conv2d_1", 3, {3, 2}, {2, 2}, Padding::same, Activation::linear, Initializer::glorot_uniform,
           true);
  ASSERT_EQ(c.build({5, 4, 2}, t.rt).value(), (Shape{3, 2, 3}));
  c.params()[1]->value = Tensor({3}, {0.1f, -0.2f, 0.3f});
  const Tensor x = random_tensor({2, 5, 4, 2}, 9);
  const Tensor y = c.forward(x, t.rt, false);
  const Tensor& f = c.params()[0]->value;
  // pad_top = ((3 - 1) * 2 + 3 - 5) / 2 = 1, pad_left = ((2 - 1) * 2 + 2 - 4) / 2 = 0.
  for (int n = 0; n < 2; ++n)
    for (int oy = 0; oy < 3; ++oy)
      for (int ox = 0; ox < 2; ++ox)
        for (int co = 0; co < 3; ++co) {
          double s = c.params()[1]->value[co];
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 2; ++kx)
              for (int ci = 0; ci < 2; ++ci) {
                const int iy = oy * 2 + ky - 1, ix = ox * 2 + kx;
                if (iy < 0 || iy >= 5 || ix >= 4) continue;
                s += static_cast<double>(x[((n * 5 + iy) * 4 + ix) * 2 + ci]) *
                     f[((ky * 2 + kx) * 2 + ci) * 3 + co];
              }
          EXPECT_NEAR(y[((n * 3 + oy) * 2 + ox) * 3 + co], s, 1e-5);
        }
}

TEST(LayerConv2D, InputOfWrongRankIsAnErrorNamingLayerAndShape) {
  TestRuntime t;
  Conv2D c("conv2d_1", 4, {3, 3}, {1, 1}, Padding::valid, Activation::relu, Initializer::glorot_uniform,
           true);
  auto r = c.build({64}, t.rt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "conv2d_1 expects input of rank 3 per sample (height, width, channels), got (64,)");
}

TEST(LayerConv2D, KernelLargerThanInputIsAnErrorNamingBothShapes) {
  TestRuntime t;
  Conv2D c("conv2d_2", 4, {5, 5}, {1, 1}, Padding::valid, Activation::relu, Initializer::glorot_uniform,
           true);
  auto r = c.build({3, 3, 8}, t.rt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "conv2d_2: kernel (5, 5) is larger than its input (3, 3, 8) with padding 'valid'");
}

TEST(LayerConv2D, RunsItsOpsThroughKernelsAtItsSites) {
  testing::RecordingHooks hooks;
  TestRuntime t(1, hooks, ProbeLevel::op);
  Conv2D c("conv2d_1", 2, {3, 3}, {1, 1}, Padding::valid, Activation::relu, Initializer::glorot_uniform,
           true);
  ASSERT_TRUE(c.build({4, 4, 1}, t.rt).ok());
  c.backward(c.forward(random_tensor({2, 4, 4, 1}, 1), t.rt, true), t.rt);
  EXPECT_EQ(hooks.kernel_sites,
            (std::vector<std::string>{"conv2d_1/conv2d.fwd", "conv2d_1/bias.bwd",
                                      "conv2d_1/conv2d.bwd_filter", "conv2d_1/conv2d.bwd_data"}));
  EXPECT_EQ(hooks.probe_sites,
            (std::vector<std::string>{"conv2d_1/conv2d.fwd:out F", "conv2d_1/bias.fwd:out F",
                                      "conv2d_1/relu.fwd:out F", "conv2d_1:out F", "conv2d_1/relu.bwd:out B",
                                      "conv2d_1/bias.bwd:out B", "conv2d_1/conv2d.bwd_filter:out B",
                                      "conv2d_1/conv2d.bwd_data:out B", "conv2d_1:dx B"}));
}

struct ConvCase {
  const char* name;
  std::array<int64_t, 2> kernel, strides;
  Padding padding;
  Activation activation;
};

class GradConv2D : public ::testing::TestWithParam<ConvCase> {};

TEST_P(GradConv2D, InputFilterAndBiasMatchFiniteDifferences) {
  const ConvCase& k = GetParam();
  TestRuntime t(5);
  Conv2D c("conv2d_1", 3, k.kernel, k.strides, k.padding, k.activation, Initializer::glorot_uniform, true);
  ASSERT_TRUE(c.build({5, 6, 2}, t.rt).ok());
  c.params()[1]->value = random_tensor({3}, 21, -0.5f, 0.5f);
  testing::expect_layer_gradients(c, random_tensor({2, 5, 6, 2}, 22), t);
}

INSTANTIATE_TEST_SUITE_P(
    Grad, GradConv2D,
    ::testing::Values(ConvCase{"valid3x3", {3, 3}, {1, 1}, Padding::valid, Activation::linear},
                      ConvCase{"same3x3stride2", {3, 3}, {2, 2}, Padding::same, Activation::linear},
                      ConvCase{"same2x3stride1x2tanh", {2, 3}, {1, 2}, Padding::same, Activation::tanh},
                      ConvCase{"valid3x2relu", {3, 2}, {1, 1}, Padding::valid, Activation::relu}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace trainrr
