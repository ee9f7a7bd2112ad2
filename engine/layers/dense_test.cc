#include "engine/layers/dense.h"

#include <gtest/gtest.h>

#include "engine/layers/layer_test_util.h"
#include "engine/layers/layers.h"

namespace trainrr {
namespace {

using testing::GradCheck;
using testing::random_tensor;
using testing::TestRuntime;

TEST(LayerDense, ForwardMatchesHandComputedValues) {
  TestRuntime t;
  Dense d("dense_1", 2, Activation::relu, Initializer::zeros, true);
  ASSERT_EQ(d.build({3}, t.rt).value(), (Shape{2}));
  std::vector<Param*> p = d.params();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0]->name, "dense_1.kernel");
  EXPECT_EQ(p[0]->value.shape, (Shape{3, 2}));
  EXPECT_EQ(p[1]->name, "dense_1.bias");
  p[0]->value = Tensor({3, 2}, {1, -1, 2, 0, 0, 3});
  p[1]->value = Tensor({2}, {0.5f, -10});
  const Tensor y = d.forward(Tensor({2, 3}, {1, 2, 3, -1, 0, 1}), t.rt, false);
  // Row 0: [1 + 4 + 0, -1 + 0 + 9] + b = [5.5, -2] -> relu [5.5, 0].
  // Row 1: [-1 + 0 + 0, 1 + 0 + 3] + b = [-0.5, -6] -> [0, 0].
  EXPECT_EQ(y.data, (std::vector<float>{5.5f, 0, 0, 0}));
}

TEST(LayerDense, HigherRankInputIsAnErrorNamingLayerAndShape) {
  TestRuntime t;
  Dense d("dense_1", 4, Activation::linear, Initializer::glorot_uniform, true);
  auto r = d.build({5, 5, 8}, t.rt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "dense_1 expects input of rank 1 per sample, got (5, 5, 8); add a Flatten layer");
}

TEST(LayerDense, RunsItsOpsThroughKernelsAtItsSitesAndProbesThem) {
  testing::RecordingHooks hooks;
  TestRuntime t(1, hooks, ProbeLevel::op);
  Dense d("dense_1", 3, Activation::sigmoid, Initializer::glorot_uniform, true);
  ASSERT_TRUE(d.build({4}, t.rt).ok());
  const Tensor y = d.forward(random_tensor({2, 4}, 1), t.rt, true);
  d.backward(y, t.rt);
  EXPECT_EQ(hooks.kernel_sites,
            (std::vector<std::string>{"dense_1/matmul.fwd", "dense_1/bias.bwd", "dense_1/matmul.bwd_weight",
                                      "dense_1/matmul.bwd_data"}));
  EXPECT_EQ(hooks.probe_sites,
            (std::vector<std::string>{
                "dense_1/matmul.fwd:out F", "dense_1/bias.fwd:out F", "dense_1/sigmoid.fwd:out F",
                "dense_1:out F", "dense_1/sigmoid.bwd:out B", "dense_1/bias.bwd:out B",
                "dense_1/matmul.bwd_weight:out B", "dense_1/matmul.bwd_data:out B", "dense_1:dx B"}));
}

TEST(LayerDense, LayerLevelProbesOnlyOutputAndDx) {
  testing::RecordingHooks hooks;
  TestRuntime t(1, hooks, ProbeLevel::layer);
  Dense d("dense_1", 3, Activation::relu, Initializer::glorot_uniform, true);
  ASSERT_TRUE(d.build({4}, t.rt).ok());
  d.backward(d.forward(random_tensor({2, 4}, 1), t.rt, true), t.rt);
  EXPECT_EQ(hooks.probe_sites, (std::vector<std::string>{"dense_1:out F", "dense_1:dx B"}));
}

class GradDense : public ::testing::TestWithParam<Activation> {};

TEST_P(GradDense, InputKernelAndBiasMatchFiniteDifferences) {
  TestRuntime t(3);
  Dense d("dense_1", 4, GetParam(), Initializer::glorot_uniform, true);
  ASSERT_TRUE(d.build({5}, t.rt).ok());
  d.params()[1]->value = random_tensor({4}, 11, -0.5f, 0.5f);  // a non-zero bias, so its path is exercised
  testing::expect_layer_gradients(d, random_tensor({3, 5}, 12), t);
}

INSTANTIATE_TEST_SUITE_P(Grad, GradDense,
                         ::testing::Values(Activation::linear, Activation::relu, Activation::sigmoid,
                                           Activation::tanh, Activation::softmax),
                         [](const auto& info) { return std::string(activation_name(info.param)); });

TEST(GradDenseNoBias, InputAndKernelMatchFiniteDifferences) {
  TestRuntime t(3);
  Dense d("dense_1", 3, Activation::tanh, Initializer::he_normal, false);
  ASSERT_TRUE(d.build({4}, t.rt).ok());
  ASSERT_EQ(d.params().size(), 1u);
  testing::expect_layer_gradients(d, random_tensor({2, 4}, 5), t);
}

}  // namespace
}  // namespace trainrr
