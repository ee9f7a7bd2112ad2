#include "engine/portable_math.h"

#include "engine/random.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

namespace trainrr {
namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  auto key = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : static_cast<int64_t>(i);
  };
  return std::llabs(key(a) - key(b));
}

// Each function against the double-precision libm value rounded to float (within half an ULP of the truth):
// at most 1 ULP apart, over a million arguments of the ranges training meets, and edge values.
template <class F, class R>
void within_one_ulp(const char* name, F portable, R reference, float lo, float hi) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(lo, hi);
  int64_t worst = 0;
  float worst_x = 0;
  for (int i = 0; i < 1000000; ++i) {
    const float x = dist(gen);
    const float want = static_cast<float>(reference(static_cast<double>(x)));
    const int64_t d = ulps(portable(x), want);
    if (d > worst) worst = d, worst_x = x;
  }
  EXPECT_LE(worst, 1) << name << " at " << worst_x;
}

TEST(PortableMath, ExpIsWithinOneUlp) {
  within_one_ulp("exp", exp_portable, [](double x) { return std::exp(x); }, -87.0f, 88.0f);
  within_one_ulp("exp", exp_portable, [](double x) { return std::exp(x); }, -1.0f, 1.0f);
  within_one_ulp("exp subnormal", exp_portable, [](double x) { return std::exp(x); }, -103.0f, -87.5f);
  EXPECT_EQ(exp_portable(0.0f), 1.0f);
  EXPECT_EQ(exp_portable(-200.0f), 0.0f);
  EXPECT_EQ(exp_portable(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(exp_portable(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(exp_portable(std::numeric_limits<float>::quiet_NaN())));
}

TEST(PortableMath, LogIsWithinOneUlp) {
  within_one_ulp("log", log_portable, [](double x) { return std::log(x); }, 1e-30f, 1e30f);
  within_one_ulp("log", log_portable, [](double x) { return std::log(x); }, 0.5f, 2.0f);
  within_one_ulp("log", log_portable, [](double x) { return std::log(x); }, 1e-7f, 1.0f);
  EXPECT_EQ(log_portable(1.0f), 0.0f);
  EXPECT_EQ(log_portable(0.0f), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(log_portable(-1.0f)));
  EXPECT_EQ(log_portable(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_LE(ulps(log_portable(1e-40f), static_cast<float>(std::log(1e-40))), 1);  // subnormal argument
}

TEST(PortableMath, Log1pIsWithinOneUlpAndExactForTinyArguments) {
  within_one_ulp("log1p", log1p_portable, [](double x) { return std::log1p(x); }, -0.99f, 10.0f);
  within_one_ulp("log1p", log1p_portable, [](double x) { return std::log1p(x); }, -1e-3f, 1e-3f);
  EXPECT_EQ(log1p_portable(1e-20f), 1e-20f);
  EXPECT_EQ(log1p_portable(-1.0f), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(log1p_portable(-2.0f)));
}

TEST(PortableMath, TanhIsWithinOneUlpAndOdd) {
  within_one_ulp("tanh", tanh_portable, [](double x) { return std::tanh(x); }, -10.0f, 10.0f);
  within_one_ulp("tanh", tanh_portable, [](double x) { return std::tanh(x); }, -1e-3f, 1e-3f);
  EXPECT_EQ(tanh_portable(0.0f), 0.0f);
  EXPECT_EQ(tanh_portable(50.0f), 1.0f);
  EXPECT_EQ(tanh_portable(-50.0f), -1.0f);
  EXPECT_EQ(tanh_portable(-0.3f), -tanh_portable(0.3f));
  EXPECT_TRUE(std::isnan(tanh_portable(std::numeric_limits<float>::quiet_NaN())));
}

TEST(PortableMath, IntegerPowersAreRepeatedSquaring) {
  EXPECT_EQ(pow_portable(0.9, 0), 1.0);
  EXPECT_EQ(pow_portable(0.9, 1), 0.9);
  EXPECT_EQ(pow_portable(0.5, 10), 1.0 / 1024);
  EXPECT_EQ(pow_portable(0.999, 3), (0.999 * 0.999) * 0.999);
  EXPECT_NEAR(pow_portable(0.999, 10000), std::pow(0.999, 10000), 1e-15);
}

TEST(PortableMath, ErfcAgreesWithGlibcsToAFewUnitsOf1e15) {
  for (int i = -3000; i <= 3000; ++i) {
    const double z = i / 500.0;  // -6 .. 6
    const double want = std::erfc(z), got = erfc_portable(z);
    if (std::abs(z) < 2)
      EXPECT_NEAR(got, want, 5e-15) << z;
    else
      EXPECT_NEAR(got / want, 1.0, 1e-13) << z;
  }
  EXPECT_EQ(erfc_portable(0.0), 1.0);
  EXPECT_EQ(erfc_portable(30.0), 0.0);
  EXPECT_EQ(erfc_portable(-30.0), 2.0);
}

// The initializers' normal draws: the portable quantile is within 1e-12 of glibc's, so the float weights it
// gives are glibc's but for the rare value whose double lies that close to a float rounding boundary.
TEST(PortableMath, NormalQuantileAgreesWithGlibcsAndRoundsToTheSameFloats) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> dist(1e-9, 1 - 1e-9);
  int same_float = 0;
  constexpr int kDraws = 200000;
  for (int i = 0; i < kDraws; ++i) {
    const double p = dist(gen);
    const double want = normal_quantile(p), got = normal_quantile_portable(p);
    ASSERT_NEAR(got, want, 1e-12 * std::max(1.0, std::abs(want))) << p;
    same_float += static_cast<float>(got) == static_cast<float>(want);
  }
  EXPECT_GE(same_float, kDraws - 2);
}

}  // namespace
}  // namespace trainrr
