#include "engine/layers/initializers.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/layers/conv2d.h"
#include "engine/layers/dense.h"
#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::TestRuntime;

struct Moments {
  double mean = 0, stddev = 0, max_abs = 0;
};

Moments moments(const Tensor& t) {
  Moments m;
  double s = 0, s2 = 0;
  for (float v : t.data)
    s += v, s2 += static_cast<double>(v) * v, m.max_abs = std::max(m.max_abs, std::abs(double(v)));
  m.mean = s / t.size();
  m.stddev = std::sqrt(s2 / t.size() - m.mean * m.mean);
  return m;
}

Tensor dense_kernel(Initializer init, int64_t in, int64_t units, uint64_t seed) {
  TestRuntime t(seed);
  Dense d("dense_1", units, Activation::linear, init, true);
  EXPECT_TRUE(d.build({in}, t.rt).ok());
  return d.params()[0]->value;
}

TEST(LayerInitializers, GlorotUniformStaysWithinTheLimitWithUniformVariance) {
  const Tensor k = dense_kernel(Initializer::glorot_uniform, 100, 50, 42);
  const double limit = std::sqrt(6.0 / 150);
  const Moments m = moments(k);
  EXPECT_LE(m.max_abs, limit);
  EXPECT_GT(m.max_abs, 0.99 * limit);
  EXPECT_NEAR(m.mean, 0, 0.01);
  // Uniform on [-l, l] has stddev l / sqrt(3); 5000 values estimate it to about 1%.
  EXPECT_NEAR(m.stddev, limit / std::sqrt(3.0), 0.03 * limit / std::sqrt(3.0));
}

TEST(LayerInitializers, HeUniformUsesFanInOnly) {
  const Tensor k = dense_kernel(Initializer::he_uniform, 60, 200, 42);
  const double limit = std::sqrt(6.0 / 60);
  const Moments m = moments(k);
  EXPECT_LE(m.max_abs, limit);
  EXPECT_GT(m.max_abs, 0.99 * limit);
}

TEST(LayerInitializers, GlorotNormalIsTruncatedAtTwoStddevsWithKerasScale) {
  const Tensor k = dense_kernel(Initializer::glorot_normal, 200, 100, 42);
  const double target = std::sqrt(2.0 / 300);  // the variance Keras aims for
  const double stddev = target / kTruncatedNormalStddev;
  const Moments m = moments(k);
  EXPECT_LE(m.max_abs, 2 * stddev * (1 + 1e-6));
  EXPECT_NEAR(m.stddev, target, 0.03 * target);
}

TEST(LayerInitializers, HeNormalOnConvUsesReceptiveFieldFanIn) {
  TestRuntime t(42);
  Conv2D c("conv2d_1", 64, {3, 3}, {1, 1}, Padding::valid, Activation::relu, Initializer::he_normal, true);
  ASSERT_TRUE(c.build({8, 8, 16}, t.rt).ok());
  const double target = std::sqrt(2.0 / (3 * 3 * 16));
  const Moments m = moments(c.params()[0]->value);
  EXPECT_LE(m.max_abs, 2 * target / kTruncatedNormalStddev * (1 + 1e-6));
  EXPECT_NEAR(m.stddev, target, 0.03 * target);
}

TEST(LayerInitializers, GlorotUniformOnConvUsesReceptiveFieldFans) {
  TestRuntime t(42);
  Conv2D c("conv2d_1", 8, {3, 3}, {1, 1}, Padding::valid, Activation::relu, Initializer::glorot_uniform,
           true);
  ASSERT_TRUE(c.build({8, 8, 4}, t.rt).ok());
  const double limit = std::sqrt(6.0 / (9 * 4 + 9 * 8));
  const Moments m = moments(c.params()[0]->value);
  EXPECT_LE(m.max_abs, limit);
  EXPECT_GT(m.max_abs, 0.95 * limit);
}

TEST(LayerInitializers, SameSeedGivesIdenticalValuesAndAnotherSeedDoesNot) {
  EXPECT_EQ(dense_kernel(Initializer::glorot_uniform, 10, 7, 5).data,
            dense_kernel(Initializer::glorot_uniform, 10, 7, 5).data);
  EXPECT_NE(dense_kernel(Initializer::glorot_uniform, 10, 7, 5).data,
            dense_kernel(Initializer::glorot_uniform, 10, 7, 6).data);
}

TEST(LayerInitializers, EachKernelDrawsOnceOnItsOwnStreamAndBiasesDrawNothing) {
  testing::RecordingHooks hooks;
  TestRuntime t(5, hooks);
  Dense a("dense_1", 3, Activation::relu, Initializer::glorot_uniform, true);
  Dense b("dense_2", 2, Activation::relu, Initializer::he_normal, true);
  ASSERT_TRUE(a.build({4}, t.rt).ok());
  ASSERT_TRUE(b.build({3}, t.rt).ok());
  ASSERT_EQ(hooks.draws.size(), 2u);
  EXPECT_EQ(hooks.draws[0].site, "init/dense_1.kernel");
  EXPECT_EQ(hooks.draws[0].stream, "init/dense_1.kernel");
  EXPECT_EQ(hooks.draws[0].count, 12u);
  EXPECT_EQ(hooks.draws[1].site, "init/dense_2.kernel");
  EXPECT_EQ(hooks.draws[1].counter, 0u);  // its own stream starts at 0
  for (float v : a.params()[1]->value.data) EXPECT_EQ(v, 0.0f);

  // dense_2's values do not depend on whether dense_1 drew first.
  TestRuntime alone(5);
  Dense b2("dense_2", 2, Activation::relu, Initializer::he_normal, true);
  ASSERT_TRUE(b2.build({3}, alone.rt).ok());
  EXPECT_EQ(b2.params()[0]->value.data, b.params()[0]->value.data);
}

TEST(LayerInitializers, ZerosDrawsNothing) {
  testing::RecordingHooks hooks;
  TestRuntime t(5, hooks);
  Dense d("dense_1", 3, Activation::relu, Initializer::zeros, true);
  ASSERT_TRUE(d.build({4}, t.rt).ok());
  EXPECT_TRUE(hooks.draws.empty());
  for (float v : d.params()[0]->value.data) EXPECT_EQ(v, 0.0f);
}

TEST(LayerInitializers, UnknownNameListsTheAcceptedOnes) {
  auto r = parse_initializer("spiral");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "unknown initializer 'spiral' (expected one of: glorot_uniform, glorot_normal, he_normal, "
            "he_uniform, zeros)");
  EXPECT_EQ(parse_initializer("orthogonal").error().message,
            "initializer 'orthogonal' is a Keras one that trainrr's engine lacks (its initializers: "
            "glorot_uniform, "
            "glorot_normal, he_normal, he_uniform, zeros)");
}

}  // namespace
}  // namespace trainrr
