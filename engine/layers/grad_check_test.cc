// The gradient check itself must be able to fail, or every Grad* test would pass vacuously.

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "engine/layers/layer_test_util.h"

namespace trainrr {
namespace {

// y = x^2 with a backward that is off by a factor of 1.5.
class WrongSquare : public Layer {
 public:
  WrongSquare() : Layer("wrong") {}
  std::string type() const override { return "WrongSquare"; }
  Result<Shape> build(const Shape& input, Runtime&) override { return input; }
  const Tensor& forward(const Tensor& x, Runtime&, bool) override {
    x_ = x;
    y_ = x;
    for (float& v : y_.data) v *= v;
    return y_;
  }
  const Tensor& backward(const Tensor& dy, Runtime&) override {
    dx_ = dy;
    for (int64_t i = 0; i < dx_.size(); ++i) dx_[i] *= 3 * x_[i];
    return dx_;
  }

 private:
  Tensor x_, y_, dx_;
};

TEST(GradCheckHarness, ReportsAWrongGradient) {
  EXPECT_NONFATAL_FAILURE(
      {
        testing::TestRuntime t;
        WrongSquare layer;
        testing::expect_layer_gradients(layer, testing::random_tensor({1, 1}, 1, 0.5f, 1), t);
      },
      "dx[");
}

}  // namespace
}  // namespace trainrr
