#include "engine/layers/batch_normalization.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::random_tensor;
using testing::TestRuntime;

TEST(LayerBatchNormalization, NormalizesWithBatchStatisticsAndMovesTheAverages) {
  TestRuntime t;
  BatchNormalization bn("batch_normalization_1", 0.99, 1e-3);
  ASSERT_EQ(bn.build({2}, t.rt).value(), (Shape{2}));
  // Column 0: mean 2.5, biased variance 1.25. Column 1: constant 10, variance 0.
  const Tensor y = bn.forward(Tensor({4, 2}, {1, 10, 2, 10, 3, 10, 4, 10}), t.rt, true);
  const double s = 1 / std::sqrt(1.25 + 1e-3);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(y[i * 2], (i + 1 - 2.5) * s, 1e-5);
    EXPECT_EQ(y[i * 2 + 1], 0.0f);
  }
  std::vector<NamedTensor*> state = bn.state();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0]->name, "batch_normalization_1.moving_mean");
  EXPECT_EQ(state[1]->name, "batch_normalization_1.moving_variance");
  EXPECT_NEAR(state[0]->value[0], 0.01 * 2.5, 1e-7);
  EXPECT_NEAR(state[0]->value[1], 0.01 * 10, 1e-6);
  EXPECT_NEAR(state[1]->value[0], 0.99 + 0.01 * 1.25, 1e-6);
  EXPECT_NEAR(state[1]->value[1], 0.99, 1e-6);
}

TEST(LayerBatchNormalization, InferenceUsesTheMovingStatisticsAndLeavesThem) {
  TestRuntime t;
  BatchNormalization bn("bn", 0.99, 1e-3);
  ASSERT_TRUE(bn.build({1}, t.rt).ok());
  bn.state()[0]->value[0] = 2;
  bn.state()[1]->value[0] = 4;
  bn.params()[0]->value[0] = 3;    // gamma
  bn.params()[1]->value[0] = 0.5;  // beta
  const Tensor y = bn.forward(Tensor({2, 1}, {2, 6}), t.rt, false);
  EXPECT_NEAR(y[0], 0.5, 1e-6);
  EXPECT_NEAR(y[1], 3 * 4 / std::sqrt(4.001) + 0.5, 1e-5);
  EXPECT_EQ(bn.state()[0]->value[0], 2.0f);
  EXPECT_EQ(bn.state()[1]->value[0], 4.0f);
}

TEST(LayerBatchNormalization, ReducesThroughKernelsAtItsSites) {
  testing::RecordingHooks hooks;
  TestRuntime t(1, hooks, ProbeLevel::op);
  BatchNormalization bn("bn", 0.99, 1e-3);
  ASSERT_TRUE(bn.build({3, 3, 2}, t.rt).ok());
  bn.backward(bn.forward(random_tensor({2, 3, 3, 2}, 4), t.rt, true), t.rt);
  EXPECT_EQ(hooks.kernel_sites, (std::vector<std::string>{"bn/bn_stats.fwd", "bn/bn_sums.bwd"}));
  EXPECT_EQ(hooks.probe_sites,
            (std::vector<std::string>{"bn/bn_stats.fwd:out F", "bn/batch_norm.fwd:out F", "bn:out F",
                                      "bn/moving_stats.fwd:out F", "bn:moving_stats F",
                                      "bn/bn_sums.bwd:out B", "bn/batch_norm.bwd_data:out B", "bn:dx B"}));
}

// Keeps the values of the probes at one site.
class ProbesAt : public Hooks {
 public:
  ProbesAt(std::string site, ProbeLevel level) : site_(std::move(site)), level_(level) {}
  ProbeLevel probe_level() const override { return level_; }
  void probe(std::string_view site, Phase, const Tensor& value) override {
    if (site == site_) seen.push_back(value);
  }
  std::vector<Tensor> seen;

 private:
  std::string site_;
  ProbeLevel level_;
};

// The moving statistics change in training only, and nothing else of a step reads them: their update is
// probed apart, mean then variance, at levels op and layer.
TEST(LayerBatchNormalization, ProbesTheMovingStatisticsAfterTheirUpdateInTrainingOnly) {
  for (const auto& [site, level] : {std::pair{"bn/moving_stats.fwd:out", ProbeLevel::op},
                                    std::pair{"bn:moving_stats", ProbeLevel::layer}}) {
    ProbesAt hooks(site, level);
    TestRuntime t(1, hooks, level);
    BatchNormalization bn("bn", 0.9, 1e-3);
    ASSERT_TRUE(bn.build({2}, t.rt).ok());
    (void)bn.forward(Tensor({2, 2}, {1, 10, 3, 10}), t.rt, true);
    ASSERT_EQ(hooks.seen.size(), 1u) << site;
    EXPECT_EQ(hooks.seen[0].shape, (Shape{2, 2}));
    // Mean (2, 10) and variance (1, 0), each moved a tenth of the way from (0, 0) and (1, 1).
    const std::vector<float> want = {bn.state()[0]->value[0], bn.state()[0]->value[1],
                                     bn.state()[1]->value[0], bn.state()[1]->value[1]};
    EXPECT_EQ(hooks.seen[0].data, want) << site;
    EXPECT_NEAR(want[0], 0.2, 1e-6);
    EXPECT_NEAR(want[3], 0.9, 1e-6);
    (void)bn.forward(Tensor({2, 2}, {1, 10, 3, 10}), t.rt, false);
    EXPECT_EQ(hooks.seen.size(), 1u) << site;
  }
}

struct BnCase {
  const char* name;
  Shape sample;
  bool training;
};

class GradBatchNormalization : public ::testing::TestWithParam<BnCase> {};

TEST_P(GradBatchNormalization, InputGammaAndBetaMatchFiniteDifferences) {
  const BnCase& k = GetParam();
  TestRuntime t;
  BatchNormalization bn("bn", 0.9, 1e-3);
  ASSERT_TRUE(bn.build(k.sample, t.rt).ok());
  const int64_t c = k.sample.back();
  bn.params()[0]->value = random_tensor({c}, 41, 0.5f, 1.5f);
  bn.params()[1]->value = random_tensor({c}, 42);
  bn.state()[0]->value = random_tensor({c}, 43);
  bn.state()[1]->value = random_tensor({c}, 44, 0.5f, 2);
  Shape batch{4};
  batch.insert(batch.end(), k.sample.begin(), k.sample.end());
  testing::expect_layer_gradients(bn, random_tensor(batch, 45, -2, 2), t, {.training = k.training});
}

INSTANTIATE_TEST_SUITE_P(Grad, GradBatchNormalization,
                         ::testing::Values(BnCase{"dense_training", {3}, true},
                                           BnCase{"image_training", {3, 2, 2}, true},
                                           BnCase{"dense_inference", {3}, false}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace trainrr
