#pragma once
// Elementwise activations and the row-wise softmax, forward and backward, over a [rows, cols] block
// (cols is the last dimension). Each derivative is written in terms of the forward output, so a layer
// keeps only its output for backward.

#include <cstdint>
#include <string_view>

#include "engine/result.h"

namespace trainrr {

enum class Activation : uint8_t { linear, relu, sigmoid, tanh, softmax };

const char* activation_name(Activation a);  // "linear", "relu", ...
// An unknown name is an error that names it and lists the accepted ones.
Result<Activation> parse_activation(std::string_view name);

// y = a(x). x and y may be the same buffer.
void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols);
// dx = dy * a'(x), from y = a(x). dy and dx may be the same buffer.
void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                         int64_t cols);

}  // namespace trainrr
