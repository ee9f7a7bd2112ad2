#pragma once
// Elementwise activations and the row-wise softmax, forward and backward, over a [rows, cols] block
// (cols is the last dimension). Each derivative is written in terms of the forward output, so a layer
// keeps only its output for backward.

#include <cstdint>
#include <string_view>

#include "engine/portable_math.h"
#include "engine/result.h"

namespace trainrr {

class ThreadPool;

enum class Activation : uint8_t { linear, relu, sigmoid, tanh, softmax };

const char* activation_name(Activation a);  // "linear", "relu", ...
// An unknown name is an error that names it and lists the accepted ones.
Result<Activation> parse_activation(std::string_view name);

// y = a(x). x and y may be the same buffer (otherwise they do not overlap). With a pool, a large block is
// split into tasks of whole rows; each element's value is the same however it is split.
// `math` picks the exp and tanh of sigmoid, tanh and softmax.
void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols,
                        ThreadPool* pool = nullptr, MathFamily math = MathFamily::libm);
// dx = dy * a'(x), from y = a(x). dy and dx may be the same buffer (otherwise they do not overlap).
void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                         int64_t cols, ThreadPool* pool = nullptr);
// y = a(y + bias) in one pass over each task's rows: the same bits as add_bias then activation_forward.
// bias may be null (no bias).
void bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                             ThreadPool* pool = nullptr, MathFamily math = MathFamily::libm);

}  // namespace trainrr
