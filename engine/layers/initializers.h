#pragma once
// Kernel initializers with Keras' formulas. A parameter named "<layer>.<param>" draws all its values in
// one draw at site "init/<layer>.<param>" from the stream of the same name, so each parameter has its own
// stream and adding a layer never shifts another layer's initial values.

#include <cstdint>
#include <string_view>

#include "engine/random.h"
#include "engine/result.h"
#include "engine/tensor.h"

namespace trainrr {

enum class Initializer : uint8_t { glorot_uniform, glorot_normal, he_normal, he_uniform, zeros };

const char* initializer_name(Initializer i);
Result<Initializer> parse_initializer(std::string_view name);

// Keras' truncated normal is rescaled by this (the stddev of a unit normal truncated to two stddevs),
// so that the drawn values have the intended variance.
inline constexpr double kTruncatedNormalStddev = 0.87962566103423978;

// Fills `value` (already shaped). fan_in / fan_out as Keras computes them: for a Dense kernel (in, units),
// in and units; for a Conv2D filter (kh, kw, c_in, filters), kh*kw*c_in and kh*kw*filters. zeros draws
// nothing.
void initialize(Initializer init, std::string_view param_name, int64_t fan_in, int64_t fan_out, Tensor& value,
                RngStreams& rng);

}  // namespace trainrr
