#include "engine/layers/loss.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/layers/activations.h"
#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

using testing::random_tensor;
using testing::TestRuntime;

std::unique_ptr<Loss> loss_of(std::string_view name, bool from_logits) {
  auto l = make_loss(name, from_logits);
  EXPECT_TRUE(l.ok()) << l.error().message;
  return std::move(l).value();
}

double loss_value(const Loss& loss, const Tensor& pred, const std::vector<float>& labels) {
  TestRuntime t;
  return loss.compute(pred, labels, t.rt).loss;
}

// Keras' documented examples (keras.losses.*), with the exact values computed in double.
TEST(LossBinaryCrossentropy, MatchesKerasOnProbabilities) {
  auto bce = loss_of("binary_crossentropy", false);
  const double want = (3 * -std::log(0.4) - std::log(0.6)) / 4;  // Keras prints 0.815
  EXPECT_NEAR(loss_value(*bce, Tensor({4, 1}, {0.6f, 0.4f, 0.4f, 0.6f}), {0, 1, 0, 0}), want, 1e-6);
}

TEST(LossBinaryCrossentropy, MatchesKerasOnLogits) {
  auto bce = loss_of("binary_crossentropy", true);
  double want = 0;
  const double z[4] = {-18.6, 0.51, 2.94, -12.8}, y[4] = {0, 1, 0, 0};
  for (int i = 0; i < 4; ++i)
    want += std::max(z[i], 0.0) - z[i] * y[i] + std::log1p(std::exp(-std::abs(z[i])));
  want /= 4;
  EXPECT_NEAR(want, 0.865, 5e-4);  // Keras' documented value
  EXPECT_NEAR(loss_value(*bce, Tensor({4, 1}, {-18.6f, 0.51f, 2.94f, -12.8f}), {0, 1, 0, 0}), want, 1e-6);
}

TEST(LossBinaryCrossentropy, StaysFiniteAtTheExtremes) {
  TestRuntime t;
  auto logits = loss_of("binary_crossentropy", true);
  const LossValue v = logits->compute(Tensor({2, 1}, {100, -100}), std::vector<float>{0, 1}, t.rt);
  EXPECT_NEAR(v.loss, 100, 1e-4);
  EXPECT_NEAR(v.grad[0], 0.5, 1e-6);
  EXPECT_NEAR(v.grad[1], -0.5, 1e-6);
  auto probs = loss_of("binary_crossentropy", false);
  const LossValue p = probs->compute(Tensor({1, 1}, {0}), std::vector<float>{1}, t.rt);
  EXPECT_NEAR(p.loss, -std::log(1e-7), 1e-3);  // clipped to Keras' epsilon
  EXPECT_EQ(p.grad[0], 0.0f);                  // the clip passes no gradient
}

TEST(LossSparseCategoricalCrossentropy, MatchesKerasOnProbabilities) {
  auto scce = loss_of("sparse_categorical_crossentropy", false);
  const double want = (-std::log(0.95) - std::log(0.1)) / 2;  // Keras prints 1.177
  EXPECT_NEAR(loss_value(*scce, Tensor({2, 3}, {0.05f, 0.95f, 0, 0.1f, 0.8f, 0.1f}), {1, 2}), want, 1e-6);
}

// Keras scales each row to sum to 1 before the clip and the log: q = p / sum(p), loss -log(q_y). Values from
// that formula in float64 with autograd (PyTorch): sigmoid outputs, rows summing to 1.5.
TEST(LossSparseCategoricalCrossentropy, RenormalisesOutputsThatAreNotADistribution) {
  TestRuntime t;
  auto scce = loss_of("sparse_categorical_crossentropy", false);
  const LossValue v =
      scce->compute(Tensor({2, 3}, {0.2f, 0.6f, 0.7f, 0.9f, 0.1f, 0.5f}), std::vector<float>{1, 2}, t.rt);
  EXPECT_NEAR(v.loss, 1.0074515102711326, 1e-6);  // (-log 0.4 - log(1/3)) / 2
  const float want[6] = {1 / 3.0f, -0.5f, 1 / 3.0f, 1 / 3.0f, 1 / 3.0f, -2 / 3.0f};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(v.grad[i], want[i], 1e-6) << "element " << i;
}

TEST(LossSparseCategoricalCrossentropy, ClipOfTheRenormalisedRowPassesNoGradient) {
  TestRuntime t;
  auto scce = loss_of("sparse_categorical_crossentropy", false);
  // Row 0 renormalises to q_y = 1, clipped to 1 - 1e-7; row 1 sums to 0.8 and q_y = 0.375.
  const LossValue v =
      scce->compute(Tensor({2, 3}, {0, 0.8f, 0, 0.3f, 0.3f, 0.2f}), std::vector<float>{1, 0}, t.rt);
  EXPECT_NEAR(v.loss, 0.4904146765058657, 1e-6);
  const float want[6] = {0, 0, 0, (1 / 0.8f - 1 / 0.3f) / 2, 0.625f, 0.625f};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(v.grad[i], want[i], 1e-6) << "element " << i;
}

// A softmax row sums to 1 but for rounding, so the loss reads it as it is: -log(p_y), with the gradient on
// p_y alone. Through the softmax's backward that is the gradient the renormalised form gives (the 1/sum term
// is the same for every class, and the softmax cancels it), and both are softmax(z) - onehot(y) on the
// logits.
TEST(LossSparseCategoricalCrossentropy, SoftmaxOutputIsTakenAsItIs) {
  TestRuntime t;
  const Tensor z = random_tensor({4, 5}, 11, -3, 3);
  Tensor p = z;
  activation_forward(Activation::softmax, z.ptr(), p.ptr(), 4, 5);
  const std::vector<float> labels{0, 4, 2, 2};
  auto softmax = make_loss("sparse_categorical_crossentropy", false, true);
  ASSERT_TRUE(softmax.ok());
  const LossValue v = (*softmax)->compute(p, labels, t.rt);
  float sum = 0;
  for (int i = 0; i < 4; ++i) sum += -std::log(p[i * 5 + static_cast<int>(labels[i])]);
  EXPECT_EQ(v.loss, static_cast<double>(sum / 4.0f));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) {
      const float py = p[i * 5 + j];
      EXPECT_EQ(v.grad[i * 5 + j], j == labels[i] ? -0.25f / py : 0.0f) << i << "," << j;
    }

  const LossValue general = loss_of("sparse_categorical_crossentropy", false)->compute(p, labels, t.rt);
  EXPECT_NEAR(general.loss, v.loss, 1e-6);
  Tensor dz(z.shape), dz_general(z.shape);
  activation_backward(Activation::softmax, p.ptr(), v.grad.ptr(), dz.ptr(), 4, 5);
  activation_backward(Activation::softmax, p.ptr(), general.grad.ptr(), dz_general.ptr(), 4, 5);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) {
      const float want = (p[i * 5 + j] - (j == labels[i] ? 1.0f : 0.0f)) / 4;
      EXPECT_NEAR(dz[i * 5 + j], want, 1e-6);
      EXPECT_NEAR(dz_general[i * 5 + j], want, 1e-6);
    }
}

TEST(LossSparseCategoricalCrossentropy, LogitsUseAStableLogSoftmax) {
  auto scce = loss_of("sparse_categorical_crossentropy", true);
  EXPECT_NEAR(loss_value(*scce, Tensor({1, 3}, {1, 2, 3}), {2}), -std::log(0.66524096), 1e-6);
  EXPECT_NEAR(loss_value(*scce, Tensor({1, 3}, {1001, 1002, 1003}), {0}), -std::log(0.09003057), 1e-5);
}

TEST(LossMeanSquaredError, MatchesKeras) {
  auto mse = loss_of("mse", false);
  EXPECT_NEAR(loss_value(*mse, Tensor({2, 2}, {1, 1, 1, 0}), {0, 1, 0, 0}), 0.5, 1e-7);
  EXPECT_TRUE(make_loss("mean_squared_error", false).ok());
}

TEST(LossMean, SumsThroughTheReductionKernelAtLossMean) {
  testing::RecordingHooks hooks;
  TestRuntime t(1, hooks);
  auto mse = loss_of("mse", false);
  (void)mse->compute(Tensor({3, 1}, {1, 2, 3}), std::vector<float>{0, 0, 0}, t.rt);
  EXPECT_EQ(hooks.kernel_sites, (std::vector<std::string>{"loss/mean"}));
}

TEST(LossCheckOutput, WidthMustHoldEveryClass) {
  auto scce = loss_of("sparse_categorical_crossentropy", true);
  EXPECT_TRUE(scce->check_output({10}, 10).ok());
  Status s = scce->check_output({8}, 10);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(
      s.error().message,
      "the model outputs 8 values per sample (one score per class) but the labels go up to 9, 10 classes "
      "counting from 0");
  EXPECT_FALSE(scce->check_output({5, 5, 8}, 10).ok());
  // More scores than the labels need is allowed, as in Keras: the data may lack the last classes.
  EXPECT_TRUE(scce->check_output({12}, 10).ok());

  auto bce = loss_of("binary_crossentropy", false);
  EXPECT_TRUE(bce->check_output({1}, 2).ok());
  s = bce->check_output({8}, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message,
            "binary_crossentropy needs 1 value per sample but the model outputs 8 values per sample");
  EXPECT_FALSE(bce->check_output({1}, 10).ok());
}

TEST(LossMakeLoss, UnknownNameListsTheAcceptedOnes) {
  auto r = make_loss("margin", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(
      r.error().message,
      "unknown loss 'margin' (expected one of: binary_crossentropy, sparse_categorical_crossentropy, mse, "
      "mean_squared_error)");
  // Keras' losses the engine lacks are said to be such, not taken for misspellings ('mae' of 'mse').
  EXPECT_EQ(make_loss("mae", false).error().message,
            "loss 'mae' is a Keras one that trainrr's engine lacks (its losses: binary_crossentropy, "
            "sparse_categorical_crossentropy, mse, mean_squared_error)");
  EXPECT_NE(make_loss("categorical_crossentropy", false)
                .error()
                .message.find("sparse_categorical_crossentropy computes the same loss from class indices"),
            std::string::npos);
  EXPECT_FALSE(make_loss("mse", true).ok());
}

TEST(LossCountCorrect, ThresholdsForBinaryAndArgmaxForSparse) {
  auto bce = loss_of("binary_crossentropy", false);
  const std::vector<float> y{1, 0, 1, 0};
  EXPECT_EQ(count_correct(*bce, false, Tensor({4, 1}, {0.9f, 0.2f, 0.4f, 0.6f}), y), 2);
  EXPECT_EQ(count_correct(*bce, true, Tensor({4, 1}, {0.1f, -0.2f, -3, 0.6f}), y), 2);
  auto scce = loss_of("sparse_categorical_crossentropy", false);
  EXPECT_EQ(count_correct(*scce, false, Tensor({3, 3}, {0.1f, 0.7f, 0.2f, 0.5f, 0.5f, 0, 0, 0, 1}),
                          std::vector<float>{1, 1, 2}),
            2);  // the tie in row 1 goes to the first maximum, class 0
}

// Central differences on the prediction, float32 evaluation: step 1e-3, and
// |numeric - analytic| <= 1e-3 + 2e-2 * max(|numeric|, |analytic|).
void expect_loss_gradient(const Loss& loss, Tensor pred, const std::vector<float>& labels) {
  TestRuntime t;
  const LossValue v = loss.compute(pred, labels, t.rt);
  ASSERT_EQ(v.grad.shape, pred.shape);
  const float h = 1e-3f;
  for (int64_t i = 0; i < pred.size(); ++i) {
    const float saved = pred[i];
    pred[i] = saved + h;
    const double fp = loss.compute(pred, labels, t.rt).loss;
    pred[i] = saved - h;
    const double fm = loss.compute(pred, labels, t.rt).loss;
    pred[i] = saved;
    const double numeric = (fp - fm) / (2.0 * h);
    EXPECT_NEAR(numeric, v.grad[i], 1e-3 + 2e-2 * std::max(std::abs(numeric), std::abs(double(v.grad[i]))))
        << loss.name() << " element " << i;
  }
}

TEST(GradLoss, BinaryCrossentropyFromProbabilities) {
  expect_loss_gradient(*loss_of("binary_crossentropy", false), random_tensor({6, 1}, 1, 0.05f, 0.95f),
                       {0, 1, 1, 0, 1, 0});
}

TEST(GradLoss, BinaryCrossentropyFromLogits) {
  expect_loss_gradient(*loss_of("binary_crossentropy", true), random_tensor({6, 1}, 2, -4, 4),
                       {0, 1, 1, 0, 1, 0});
}

TEST(GradLoss, SparseCategoricalCrossentropyFromProbabilities) {
  expect_loss_gradient(*loss_of("sparse_categorical_crossentropy", false),
                       random_tensor({4, 3}, 3, 0.1f, 0.9f), {0, 2, 1, 2});
}

// Sigmoid outputs: rows that do not sum to 1, which Keras renormalises.
TEST(GradLoss, SparseCategoricalCrossentropyFromSigmoidOutputs) {
  Tensor p = random_tensor({5, 4}, 6, -3, 3);
  activation_forward(Activation::sigmoid, p.ptr(), p.ptr(), 5, 4);
  expect_loss_gradient(*loss_of("sparse_categorical_crossentropy", false), p, {3, 0, 1, 2, 1});
}

TEST(GradLoss, SparseCategoricalCrossentropyFromLogits) {
  expect_loss_gradient(*loss_of("sparse_categorical_crossentropy", true), random_tensor({4, 3}, 4, -3, 3),
                       {0, 2, 1, 2});
}

TEST(GradLoss, MeanSquaredError) {
  expect_loss_gradient(*loss_of("mse", false), random_tensor({3, 2}, 5), {0.5f, -1, 0, 2, 0.25f, 1});
}

}  // namespace
}  // namespace trainrr
