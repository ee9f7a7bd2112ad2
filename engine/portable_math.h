#pragma once
// Elementary functions whose bits are the same on every x86-64 CPU, for runtime.policy = "portable".
//
// glibc picks its exp, log, pow, ... at load time by the CPU (an FMA build on CPUs with FMA, an SSE2 build
// otherwise), and the two round differently for some arguments. These are computed in double with
// additions, subtractions, multiplications and divisions only, each rounded once (IEEE 754, the same on
// every CPU; this file is compiled without FMA contraction), in one fixed order, and rounded to float once at
// the end. They are accurate to about 1 ULP of float; what they promise is that they are the same
// everywhere, not that they are correctly rounded.

#include <cmath>
#include <cstdint>

namespace trainrr {

float exp_portable(float x);
float log_portable(float x);    // log(x); -inf at 0, NaN below
float log1p_portable(float x);  // log(1 + x), accurate for small x
float tanh_portable(float x);
// The double forms the initializers' normal draws use (normal_quantile), and erfc.
double exp_portable_double(double x);
double log_portable_double(double x);
double erfc_portable(double z);
// base^n for an integer n >= 0, by repeated squaring (Adam's bias corrections).
double pow_portable(double base, int64_t n);

// Which family a run's layers, losses and optimizers use: glibc's (every policy but portable) or the
// portable one.
enum class MathFamily : uint8_t { libm, portable };

// The two families the layers and losses are written against: glibc's (what every policy but portable
// uses) and the portable one.
struct LibmMath {
  static float exp(float x) { return std::exp(x); }
  static float log(float x) { return std::log(x); }
  static float log1p(float x) { return std::log1p(x); }
  static float tanh(float x) { return std::tanh(x); }
};
struct PortableMath {
  static float exp(float x) { return exp_portable(x); }
  static float log(float x) { return log_portable(x); }
  static float log1p(float x) { return log1p_portable(x); }
  static float tanh(float x) { return tanh_portable(x); }
};

}  // namespace trainrr
