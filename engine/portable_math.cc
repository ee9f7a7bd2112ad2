#include "engine/portable_math.h"

#include <bit>
#include <cstdint>
#include <limits>

#include "engine/kernels/fp_contract.h"

// Built with -ffp-contract=off as well (CMakeLists.txt): no multiply and add here may fuse, whatever -march.

namespace trainrr {
namespace {

// 2^k as a double, for -1022 <= k <= 1023.
double two_to(int64_t k) { return std::bit_cast<double>(static_cast<uint64_t>(k + 1023) << 52); }

// ln 2 split so that k * kLn2Hi is exact for |k| < 2^11 (the low 32 bits of kLn2Hi are zero).
constexpr double kLn2Hi = 0x1.62e42feep-1;
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
constexpr double kInvLn2 = 0x1.71547652b82fep0;
// Adding and subtracting 1.5 * 2^52 rounds a double below 2^51 to the nearest integer.
constexpr double kRoundShift = 0x1.8p52;

// exp(x): x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to r^13 / 13! (the next term is
// below 5e-18 of the result), then scaled by 2^k.
TRAINRR_NO_FP_CONTRACT double exp_double(double x) {
  TRAINRR_NO_FP_CONTRACT_BODY
  if (x != x) return x;
  if (x > 709.8) return std::numeric_limits<double>::infinity();
  if (x < -745.2) return 0.0;
  const double kd = (x * kInvLn2 + kRoundShift) - kRoundShift;
  const int64_t k = static_cast<int64_t>(kd);
  const double r = (x - kd * kLn2Hi) - kd * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  constexpr double kInverseFactorials[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                           1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                           1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                           1.0 / 6.0,         0.5,              1.0,
                                           1.0};
  for (double c : kInverseFactorials) p = p * r + c;
  // 2^k in two steps where it would leave the normal range: exp(x) itself may be subnormal.
  if (k > 1023) return p * two_to(1023) * two_to(k - 1023);
  if (k < -1021) return p * two_to(k + 1000) * two_to(-1000);
  return p * two_to(k);
}

// log(x): x = 2^e m with sqrt(1/2) <= m < sqrt(2); log(m) = 2 atanh(s), s = (m - 1) / (m + 1), by its series
// to s^25 (|s| <= 0.1716: the next term is below 1e-18 of the result).
TRAINRR_NO_FP_CONTRACT double log_double(double x) {
  TRAINRR_NO_FP_CONTRACT_BODY
  if (x != x) return x;
  if (x < 0) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0) return -std::numeric_limits<double>::infinity();
  if (x == std::numeric_limits<double>::infinity()) return x;
  int64_t e = 0;
  if (x < 0x1p-1022) {  // subnormal: make it normal first
    x *= 0x1p54;
    e = -54;
  }
  const uint64_t bits = std::bit_cast<uint64_t>(x);
  e += static_cast<int64_t>(bits >> 52) - 1023;
  double m = std::bit_cast<double>((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
  if (m > 1.4142135623730951) {
    m *= 0.5;  // exact
    e += 1;
  }
  const double f = m - 1.0;  // exact (Sterbenz)
  const double s = f / (2.0 + f);
  const double z = s * s;
  double p = 1.0 / 25.0;
  constexpr double kInverseOdd[] = {1.0 / 23.0, 1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0,
                                    1.0 / 11.0, 1.0 / 9.0,  1.0 / 7.0,  1.0 / 5.0,  1.0 / 3.0};
  for (double c : kInverseOdd) p = p * z + c;
  const double two_s = 2.0 * s;
  const double log_m = two_s + two_s * z * p;
  const double ed = static_cast<double>(e);
  return ed * kLn2Hi + (ed * kLn2Lo + log_m);
}

}  // namespace

double exp_portable_double(double x) { return exp_double(x); }
double log_portable_double(double x) { return log_double(x); }

// erfc(z) for z >= 0. Below 2: 1 - erf(z), erf by its series of positive terms
// erf(z) = 2/sqrt(pi) e^{-z^2} sum_n (2 z^2)^n z / (2n+1)!! (no cancellation; at most about 40 terms).
// From 2 on: Laplace's continued fraction e^{-z^2} / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / ...))),
// 80 levels deep, evaluated from the bottom. Both agree with a correctly rounded erfc to a few 1e-15 of 1 below
// 2 and a few 1e-15 relative above.
TRAINRR_NO_FP_CONTRACT double erfc_positive(double z) {
  TRAINRR_NO_FP_CONTRACT_BODY
  constexpr double kInvSqrtPi = 0.56418958354775628695;
  if (z < 2.0) {
    const double two_z2 = 2.0 * z * z;
    double term = z, sum = z;
    for (int n = 1; n < 200 && term > sum * 1e-17; ++n) {
      term = term * two_z2 / static_cast<double>(2 * n + 1);
      sum += term;
    }
    return 1.0 - 2.0 * kInvSqrtPi * exp_double(-z * z) * sum;
  }
  if (z > 27.3) return 0.0;  // below the smallest double
  double k = 0.0;
  for (int level = 80; level >= 1; --level) k = (static_cast<double>(level) * 0.5) / (z + k);
  return exp_double(-z * z) * kInvSqrtPi / (z + k);
}

TRAINRR_NO_FP_CONTRACT double erfc_portable(double z) {
  TRAINRR_NO_FP_CONTRACT_BODY
  if (z != z) return z;
  return z >= 0 ? erfc_positive(z) : 2.0 - erfc_positive(-z);
}

TRAINRR_NO_FP_CONTRACT float exp_portable(float x) {
  TRAINRR_NO_FP_CONTRACT_BODY
  return static_cast<float>(exp_double(x));
}

TRAINRR_NO_FP_CONTRACT float log_portable(float x) {
  TRAINRR_NO_FP_CONTRACT_BODY
  return static_cast<float>(log_double(x));
}

TRAINRR_NO_FP_CONTRACT float log1p_portable(float x) {
  TRAINRR_NO_FP_CONTRACT_BODY
  const double d = x;
  // Below 2^-28, x^2 / 2 is below 2^-29 of x: log(1 + x) rounds to x - x^2 / 2 in float.
  if (d > -0x1p-28 && d < 0x1p-28) return static_cast<float>(d - d * d * 0.5);
  // 1 + x is exact in double for a float x of this size, and log_double reads m - 1 = x back exactly.
  return static_cast<float>(log_double(1.0 + d));
}

TRAINRR_NO_FP_CONTRACT float tanh_portable(float x) {
  TRAINRR_NO_FP_CONTRACT_BODY
  if (x != x) return x;
  const double a = x < 0 ? -static_cast<double>(x) : static_cast<double>(x);
  double t;
  if (a < 0x1p-13) {
    t = a - a * a * a / 3.0;
  } else {
    // 1 - 2 / (e^{2a} + 1): for large a, e^{2a} is inf and t is 1.
    t = 1.0 - 2.0 / (exp_double(2.0 * a) + 1.0);
  }
  return static_cast<float>(x < 0 ? -t : t);
}

TRAINRR_NO_FP_CONTRACT double pow_portable(double base, int64_t n) {
  TRAINRR_NO_FP_CONTRACT_BODY
  double result = 1.0;
  for (double b = base; n > 0; n >>= 1, b *= b)
    if (n & 1) result *= b;
  return result;
}

}  // namespace trainrr
