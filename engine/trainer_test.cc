#include "engine/trainer.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

LayerSpec layer(const std::string& type, const std::string& activation = "linear") {
  LayerSpec s;
  s.type = type;
  s.activation = activation;
  return s;
}

TEST(EndsInSoftmax, OnlyASoftmaxThatIsTheLastLayerOverOneAxis) {
  EXPECT_TRUE(ends_in_softmax({layer("Dense", "relu"), layer("Dense", "softmax")}, {10}));
  EXPECT_TRUE(ends_in_softmax({layer("Dense"), layer("Activation", "softmax")}, {10}));
  // Dropout scales what the softmax gave during training: the rows no longer sum to 1.
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "softmax"), layer("Dropout")}, {10}));
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "sigmoid")}, {10}));
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "relu")}, {10}));
  // A softmax over the channels of an image sums to 1 per pixel, not over the sample.
  EXPECT_FALSE(ends_in_softmax({layer("Conv2D", "softmax")}, {4, 4, 3}));
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "softmax")}, {4, 3}));
}

}  // namespace
}  // namespace trainrr
