#include "engine/layers/activations.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/layers/activation_layer.h"
#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::GradCheck;
using testing::random_tensor;
using testing::TestRuntime;

TEST(LayerActivations, SoftmaxOfKnownValues) {
  const float x[3] = {1, 2, 3};
  float y[3];
  activation_forward(Activation::softmax, x, y, 1, 3);
  // exp(k) / (e + e^2 + e^3), computed independently.
  EXPECT_NEAR(y[0], 0.09003057f, 1e-6);
  EXPECT_NEAR(y[1], 0.24472847f, 1e-6);
  EXPECT_NEAR(y[2], 0.66524096f, 1e-6);
}

TEST(LayerActivations, SoftmaxIsFiniteForHugeLogits) {
  const float x[4] = {1000, 1001, -1000, -1001};
  float y[4];
  activation_forward(Activation::softmax, x, y, 2, 2);
  EXPECT_NEAR(y[0], 0.26894142f, 1e-6);
  EXPECT_NEAR(y[1], 0.73105858f, 1e-6);
  EXPECT_NEAR(y[2], 0.73105858f, 1e-6);
  EXPECT_NEAR(y[3], 0.26894142f, 1e-6);
}

TEST(LayerActivations, ElementwiseValues) {
  const float x[3] = {-2, 0, 1.5f};
  float y[3];
  activation_forward(Activation::relu, x, y, 1, 3);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 1.5f);
  activation_forward(Activation::sigmoid, x, y, 1, 3);
  EXPECT_NEAR(y[0], 0.11920292f, 1e-7);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_NEAR(y[2], 0.81757448f, 1e-7);
  activation_forward(Activation::tanh, x, y, 1, 3);
  EXPECT_NEAR(y[0], -0.96402758f, 1e-7);
  EXPECT_NEAR(y[2], 0.90514825f, 1e-7);
  const float big[2] = {-200, 200};
  activation_forward(Activation::sigmoid, big, y, 1, 2);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 1.0f);
}

TEST(LayerActivations, UnknownNameListsTheAcceptedOnes) {
  auto a = parse_activation("squash");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().message,
            "unknown activation 'squash' (expected one of: linear, relu, sigmoid, tanh, softmax)");
  // One of Keras' that the engine lacks is said to be one, not taken for a misspelling ('gelu' of 'relu').
  for (const char* keras : {"swish", "gelu"})
    EXPECT_EQ(parse_activation(keras).error().message,
              "activation '" + std::string(keras) +
                  "' is a Keras one that trainrr's engine lacks (its activations: linear, relu, sigmoid, "
                  "tanh, softmax)");
}

TEST(LayerActivations, ANameCloseToAnAcceptedOneSuggestsIt) {
  EXPECT_EQ(parse_activation("ReLU").error().message, "unknown activation 'ReLU' (did you mean 'relu'?)");
  EXPECT_EQ(parse_activation("relux").error().message, "unknown activation 'relux' (did you mean 'relu'?)");
  EXPECT_EQ(parse_activation("Soft-Max").error().message, "unknown activation 'Soft-Max' (did you mean 'softmax'?)");
}

TEST(LayerActivations, LayerProbesItsOpAndOutput) {
  testing::RecordingHooks hooks;
  TestRuntime t(1, hooks, ProbeLevel::op);
  ActivationLayer layer("activation_1", Activation::relu);
  ASSERT_TRUE(layer.build({4}, t.rt).ok());
  const Tensor y = layer.forward(random_tensor({2, 4}, 1), t.rt, true);
  layer.backward(y, t.rt);
  EXPECT_EQ(hooks.probe_sites,
            (std::vector<std::string>{"activation_1/relu.fwd:out F", "activation_1:out F",
                                      "activation_1/relu.bwd:out B", "activation_1:dx B"}));
}

class GradActivation : public ::testing::TestWithParam<Activation> {};

TEST_P(GradActivation, InputGradientMatchesFiniteDifferences) {
  TestRuntime t;
  ActivationLayer layer("activation_1", GetParam());
  ASSERT_TRUE(layer.build({3, 5}, t.rt).ok());
  // Inputs in [-2, 2]; with 30 values none lies within the step of relu's kink at 0 for this seed.
  testing::expect_layer_gradients(layer, random_tensor({2, 3, 5}, 7, -2, 2), t);
}

INSTANTIATE_TEST_SUITE_P(Grad, GradActivation,
                         ::testing::Values(Activation::linear, Activation::relu, Activation::sigmoid,
                                           Activation::tanh, Activation::softmax),
                         [](const auto& info) { return std::string(activation_name(info.param)); });

}  // namespace
}  // namespace trainrr
