#include "engine/layers/dropout.h"

#include <gtest/gtest.h>

#include "engine/layers/flatten.h"
#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::random_tensor;
using testing::TestRuntime;

TEST(LayerDropout, KeepsAboutOneMinusRateAndScalesTheKept) {
  TestRuntime t(17);
  Dropout d("dropout_1", 0.3);
  ASSERT_TRUE(d.build({100}, t.rt).ok());
  const Tensor y = d.forward(Tensor({100, 100}, 2.0f), t.rt, true);
  int64_t kept = 0;
  const float scaled = 2.0f * static_cast<float>(1.0 / 0.7);
  for (float v : y.data) {
    if (v != 0) {
      ++kept;
      EXPECT_EQ(v, scaled);
    }
  }
  // 10000 Bernoulli(0.7) draws: the standard deviation of the fraction is 0.0046; allow 4 of them.
  EXPECT_NEAR(static_cast<double>(kept) / y.size(), 0.7, 0.02);
}

TEST(LayerDropout, IsTheIdentityOutsideTrainingAndDrawsNothing) {
  testing::RecordingHooks hooks;
  TestRuntime t(17, hooks);
  Dropout d("dropout_1", 0.5);
  ASSERT_TRUE(d.build({8}, t.rt).ok());
  const Tensor x = random_tensor({4, 8}, 3);
  EXPECT_EQ(d.forward(x, t.rt, false).data, x.data);
  EXPECT_EQ(d.backward(x, t.rt).data, x.data);
  EXPECT_TRUE(hooks.draws.empty());
}

TEST(LayerDropout, DrawsOneUniformPerElementOnItsOwnStreamOncePerBatch) {
  testing::RecordingHooks hooks;
  TestRuntime t(17, hooks);
  Dropout d("dropout_1", 0.25);
  ASSERT_TRUE(d.build({6}, t.rt).ok());
  const Tensor x = random_tensor({5, 6}, 3, 1, 2);  // never zero, so a zero output means dropped
  const Tensor y = d.forward(x, t.rt, true);
  ASSERT_EQ(hooks.draws.size(), 1u);
  EXPECT_EQ(hooks.draws[0].site, "dropout/dropout_1");
  EXPECT_EQ(hooks.draws[0].stream, "dropout/dropout_1");
  EXPECT_EQ(hooks.draws[0].count, 30u);
  // The mask is u >= rate for the same draw made independently.
  RngStreams rng(17, null_hooks());
  std::vector<float> u(30);
  rng.uniform("dropout/dropout_1", "dropout/dropout_1", u, 0, 1);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(y[i] != 0, u[i] >= 0.25f) << i;
  d.forward(x, t.rt, true);
  ASSERT_EQ(hooks.draws.size(), 2u);
  EXPECT_EQ(hooks.draws[1].counter, 30u);  // the next batch continues the stream
}

TEST(GradDropout, InputGradientMatchesFiniteDifferencesForTheSameMask) {
  TestRuntime t(23);
  Dropout d("dropout_1", 0.4);
  ASSERT_TRUE(d.build({3, 4}, t.rt).ok());
  testing::expect_layer_gradients(d, random_tensor({3, 3, 4}, 8), t);
}

TEST(LayerFlatten, FlattensRowMajorAndRestoresTheShape) {
  TestRuntime t;
  Flatten f("flatten_1");
  ASSERT_EQ(f.build({2, 3, 2}, t.rt).value(), (Shape{12}));
  const Tensor x = random_tensor({2, 2, 3, 2}, 3);
  const Tensor y = f.forward(x, t.rt, true);
  EXPECT_EQ(y.shape, (Shape{2, 12}));
  EXPECT_EQ(y.data, x.data);
  const Tensor dx = f.backward(y, t.rt);
  EXPECT_EQ(dx.shape, x.shape);
  EXPECT_EQ(dx.data, x.data);
}

TEST(GradFlatten, InputGradientMatchesFiniteDifferences) {
  TestRuntime t;
  Flatten f("flatten_1");
  ASSERT_TRUE(f.build({2, 3, 2}, t.rt).ok());
  testing::expect_layer_gradients(f, random_tensor({2, 2, 3, 2}, 3), t);
}

}  // namespace
}  // namespace trainrr
