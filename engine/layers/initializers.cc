#include "engine/layers/initializers.h"

#include <cmath>
#include <string>

#include "engine/choice.h"

namespace trainrr {

const char* initializer_name(Initializer i) {
  switch (i) {
    case Initializer::glorot_uniform:
      return "glorot_uniform";
    case Initializer::glorot_normal:
      return "glorot_normal";
    case Initializer::he_normal:
      return "he_normal";
    case Initializer::he_uniform:
      return "he_uniform";
    case Initializer::zeros:
      return "zeros";
  }
  return "?";
}

Result<Initializer> parse_initializer(std::string_view name) {
  for (Initializer i : {Initializer::glorot_uniform, Initializer::glorot_normal, Initializer::he_normal,
                        Initializer::he_uniform, Initializer::zeros})
    if (name == initializer_name(i)) return i;
  return Error{unknown_choice(
      "initializer", name, {"glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "zeros"},
      {"lecun_normal", "lecun_uniform", "ones", "random_normal", "random_uniform", "truncated_normal",
       "orthogonal", "identity", "constant", "variance_scaling"})};
}

void initialize(Initializer init, std::string_view param_name, int64_t fan_in, int64_t fan_out, Tensor& value,
                RngStreams& rng) {
  TRAINRR_CHECK(fan_in > 0 && fan_out > 0, std::string(param_name));
  const std::string site = "init/" + std::string(param_name);
  const std::span<float> out(value.data);
  const double in = static_cast<double>(fan_in), sum = static_cast<double>(fan_in + fan_out);
  switch (init) {
    case Initializer::glorot_uniform: {
      const float limit = static_cast<float>(std::sqrt(6.0 / sum));
      rng.uniform(site, site, out, -limit, limit);
      return;
    }
    case Initializer::glorot_normal:
      rng.truncated_normal(site, site, out, 0.0f,
                           static_cast<float>(std::sqrt(2.0 / sum) / kTruncatedNormalStddev));
      return;
    case Initializer::he_normal:
      rng.truncated_normal(site, site, out, 0.0f,
                           static_cast<float>(std::sqrt(2.0 / in) / kTruncatedNormalStddev));
      return;
    case Initializer::he_uniform: {
      const float limit = static_cast<float>(std::sqrt(6.0 / in));
      rng.uniform(site, site, out, -limit, limit);
      return;
    }
    case Initializer::zeros:
      value.fill(0.0f);
      return;
  }
}

}  // namespace trainrr
