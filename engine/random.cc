#include "engine/random.h"

#include <Random123/philox.h>
#include <xxhash.h>

#include <cmath>
#include <random>

#include "engine/counter_rng.h"
#include "engine/result.h"

namespace trainrr {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  r123::Philox4x32_R<10> rng;
  r123::Philox4x32_R<10>::ctr_type c = {{counter[0], counter[1], counter[2], counter[3]}};
  r123::Philox4x32_R<10>::key_type k = {{key[0], key[1]}};
  auto r = rng(c, k);
  return {r[0], r[1], r[2], r[3]};
}

void philox_words(uint64_t key, uint64_t offset, std::span<uint32_t> out) {
  const std::array<uint32_t, 2> k = {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
  uint64_t w = offset;
  size_t i = 0;
  while (i < out.size()) {
    const uint64_t block = w / 4;
    auto r = philox4x32_10({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0, 0}, k);
    for (uint64_t j = w % 4; j < 4 && i < out.size(); ++j, ++i, ++w) out[i] = r[j];
  }
}

uint64_t stream_key(uint64_t seed, std::string_view stream) {
  return XXH3_64bits_withSeed(stream.data(), stream.size(), seed);
}

namespace {

struct LibmDouble {
  static double log(double x) { return std::log(x); }
  static double exp(double x) { return std::exp(x); }
  static double erfc(double x) { return std::erfc(x); }
};
struct PortableDouble {
  static double log(double x) { return log_portable_double(x); }
  static double exp(double x) { return exp_portable_double(x); }
  static double erfc(double x) { return erfc_portable(x); }
};

template <class M>
double quantile(double p) {
  // Acklam's rational approximation with one Newton step (Halley) for full double accuracy.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double lo = 0.02425, hi = 1 - lo;
  double x;
  if (p < lo) {
    double q = std::sqrt(-2 * M::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= hi) {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    double q = std::sqrt(-2 * M::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double e = 0.5 * M::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * std::sqrt(2 * M_PI) * M::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

}  // namespace

double normal_quantile(double p) { return quantile<LibmDouble>(p); }
double normal_quantile_portable(double p) { return quantile<PortableDouble>(p); }

uint64_t entropy_seed() {
  std::random_device rd;
  // 63 bits: a configuration's seed is a TOML integer (int64), so every drawn seed can be written back.
  return ((static_cast<uint64_t>(rd()) << 32) | rd()) >> 1;
}

RngDraw RngStreams::draw_words(std::string_view site, std::string_view stream_name, std::span<uint32_t> out) {
  RngDraw draw = reserve(site, stream_name, out.size());
  philox_words(draw.key, draw.counter, out);
  return draw;
}

RngDraw RngStreams::reserve(std::string_view site, std::string_view stream_name, uint64_t count) {
  const std::string scoped = scope_.empty() ? std::string() : std::string(stream_name) + scope_;
  const std::string_view stream = scope_.empty() ? stream_name : std::string_view(scoped);
  auto it = offsets_.find(stream);
  if (it == offsets_.end()) it = offsets_.emplace(std::string(stream), 0).first;
  RngDraw draw{std::string(site), std::string(stream), stream_key(seed_, stream), it->second, count};
  hooks_->rng_draw(draw);
  TRAINRR_CHECK(draw.count == count, "a hook may not change the size of a draw");
  it->second = draw.counter + draw.count;
  return draw;
}

void RngStreams::uniform(std::string_view site, std::string_view stream, std::span<float> out, float lo,
                         float hi) {
  scratch_.resize(out.size());
  RngDraw d = draw_words(site, stream, scratch_);
  for (size_t i = 0; i < out.size(); ++i) out[i] = rng::uniform_between(scratch_[i], lo, hi);
  hooks_->rng_values(d, std::as_bytes(out));
}

namespace {
// (0, 1) exclusive, so the quantile stays finite.
double open01(uint32_t w) { return (static_cast<double>(w) + 0.5) / 4294967296.0; }
}  // namespace

void RngStreams::normal(std::string_view site, std::string_view stream, std::span<float> out, float mean,
                        float stddev) {
  scratch_.resize(out.size());
  double (*const quantile_of)(double) = math_ == MathFamily::portable ? normal_quantile_portable : normal_quantile;
  RngDraw d = draw_words(site, stream, scratch_);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<float>(mean + stddev * quantile_of(open01(scratch_[i])));
  hooks_->rng_values(d, std::as_bytes(out));
}

void RngStreams::truncated_normal(std::string_view site, std::string_view stream, std::span<float> out,
                                  float mean, float stddev) {
  // Phi(-2) and Phi(2): the quantile of a uniform draw between them lies within two standard deviations.
  const double plo = 0.022750131948179195, phi = 1 - plo;
  scratch_.resize(out.size());
  double (*const quantile_of)(double) = math_ == MathFamily::portable ? normal_quantile_portable : normal_quantile;
  RngDraw d = draw_words(site, stream, scratch_);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<float>(mean + stddev * quantile_of(plo + (phi - plo) * open01(scratch_[i])));
  hooks_->rng_values(d, std::as_bytes(out));
}

void RngStreams::words(std::string_view site, std::string_view stream, std::span<uint32_t> out) {
  RngDraw d = draw_words(site, stream, out);
  hooks_->rng_values(d, std::as_bytes(out));
}

void permutation_from_words(std::span<const uint32_t> words, std::vector<uint32_t>& perm, uint32_t n) {
  TRAINRR_CHECK(words.size() + 1 >= n, "a permutation of n rows needs n - 1 words");
  perm.resize(n);
  for (uint32_t i = 0; i < n; ++i) perm[i] = i;
  for (uint32_t i = n; i > 1; --i) {
    const uint32_t j = static_cast<uint32_t>((static_cast<uint64_t>(words[n - i]) * i) >> 32);
    std::swap(perm[i - 1], perm[j]);
  }
}

void permutation_from_draw(const RngDraw& draw, std::vector<uint32_t>& perm, uint32_t n) {
  std::vector<uint32_t> words(draw.count);
  philox_words(draw.key, draw.counter, words);
  permutation_from_words(words, perm, n);
}

RngDraw RngStreams::permutation(std::string_view site, std::string_view stream, std::vector<uint32_t>& perm,
                                uint32_t n) {
  scratch_.resize(n > 1 ? n - 1 : 0);
  RngDraw d = draw_words(site, stream, scratch_);
  permutation_from_words(scratch_, perm, n);
  hooks_->rng_values(d, std::as_bytes(std::span<const uint32_t>(perm)));
  return d;
}

std::vector<std::pair<std::string, uint64_t>> RngStreams::offsets() const {
  return {offsets_.begin(), offsets_.end()};
}

void RngStreams::restore(const std::vector<std::pair<std::string, uint64_t>>& offsets) {
  offsets_.clear();
  for (const auto& [name, off] : offsets) offsets_[name] = off;
}

}  // namespace trainrr
