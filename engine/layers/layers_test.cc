#include "engine/layers/layers.h"

#include <gtest/gtest.h>

#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::TestRuntime;

LayerSpec spec_of(std::string type, std::string name = "") {
  LayerSpec s;
  s.type = std::move(type);
  s.name = std::move(name);
  s.units = 4;
  s.filters = 2;
  s.rate = 0.5;
  return s;
}

TEST(LayerMakeLayer, BuildsEveryTypeWithItsKerasName) {
  for (const char* type :
       {"Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "BatchNormalization", "Activation"}) {
    auto layer = make_layer(spec_of(type, "x"));
    ASSERT_TRUE(layer.ok()) << type << ": " << layer.error().message;
    EXPECT_EQ((*layer)->type(), type);
    EXPECT_EQ((*layer)->name(), "x");
  }
  auto alias = make_layer(spec_of("MaxPooling2D"));
  ASSERT_TRUE(alias.ok());
  EXPECT_EQ((*alias)->type(), "MaxPool2D");
}

TEST(LayerMakeLayer, ShapesFlowThroughAConvNet) {
  TestRuntime t;
  Shape s{28, 28, 1};
  LayerSpec conv = spec_of("Conv2D", "conv2d_1");
  conv.filters = 32;
  LayerSpec pool = spec_of("MaxPool2D", "max_pooling2d_1");
  LayerSpec dense = spec_of("Dense", "dense_1");
  dense.units = 10;
  dense.activation = "softmax";
  for (const LayerSpec& spec : {conv, pool, spec_of("Flatten", "flatten_1"), dense}) {
    auto layer = make_layer(spec);
    ASSERT_TRUE(layer.ok());
    auto out = (*layer)->build(s, t.rt);
    ASSERT_TRUE(out.ok()) << out.error().message;
    s = out.value();
  }
  EXPECT_EQ(s, (Shape{10}));
}

TEST(LayerMakeLayer, UnknownTypeListsTheAcceptedOnes) {
  auto r = make_layer(spec_of("LSTM", "lstm_1"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "unknown layer type 'LSTM' (expected one of: Dense, Conv2D, MaxPool2D, Flatten, Dropout, "
            "BatchNormalization, Activation)");
}

TEST(LayerMakeLayer, UnknownActivationInitializerOrPaddingNamesTheLayerAndValue) {
  LayerSpec d = spec_of("Dense", "dense_1");
  d.activation = "relux";
  auto r = make_layer(d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "dense_1: unknown activation 'relux' (did you mean 'relu'?)");
  d.activation = "squash";
  EXPECT_EQ(make_layer(d).error().message,
            "dense_1: unknown activation 'squash' (expected one of: linear, relu, sigmoid, tanh, softmax)");

  LayerSpec c = spec_of("Conv2D", "conv2d_1");
  c.kernel_initializer = "lecun";
  r = make_layer(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("conv2d_1: unknown initializer 'lecun' (expected one of: glorot_uniform"),
            std::string::npos);

  c = spec_of("Conv2D", "conv2d_1");
  c.padding = "full";
  r = make_layer(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "conv2d_1: unknown padding 'full' (expected one of: valid, same)");

  LayerSpec a = spec_of("Activation", "activation_1");
  a.activation = "swish";
  EXPECT_FALSE(make_layer(a).ok());
}

TEST(LayerMakeLayer, OutOfRangeSettingsAreErrors) {
  LayerSpec d = spec_of("Dense", "dense_1");
  d.units = 0;
  auto r = make_layer(d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "dense_1: units must be positive, got 0");

  LayerSpec drop = spec_of("Dropout", "dropout_1");
  drop.rate = 1;
  r = make_layer(drop);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "dropout_1: rate must be in [0, 1), got 1");

  LayerSpec c = spec_of("Conv2D", "conv2d_1");
  c.strides = {0, 1};
  r = make_layer(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "conv2d_1: strides must be positive, got (0, 1)");

  LayerSpec bn = spec_of("BatchNormalization", "bn");
  bn.epsilon = 0;
  EXPECT_FALSE(make_layer(bn).ok());
}

}  // namespace
}  // namespace trainrr
