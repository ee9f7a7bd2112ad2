#include "engine/layers/activations.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace trainrr {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::linear:
      return "linear";
    case Activation::relu:
      return "relu";
    case Activation::sigmoid:
      return "sigmoid";
    case Activation::tanh:
      return "tanh";
    case Activation::softmax:
      return "softmax";
  }
  return "?";
}

Result<Activation> parse_activation(std::string_view name) {
  for (Activation a :
       {Activation::linear, Activation::relu, Activation::sigmoid, Activation::tanh, Activation::softmax})
    if (name == activation_name(a)) return a;
  return Error{"unknown activation '" + std::string(name) +
               "' (expected one of: linear, relu, sigmoid, tanh, softmax)"};
}

namespace {

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    // Subtracting the row maximum keeps exp() finite for any logits.
    const float m = *std::max_element(xr, xr + cols);
    float sum = 0;
    for (int64_t j = 0; j < cols; ++j) {
      yr[j] = std::exp(xr[j] - m);
      sum += yr[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
  }
}

}  // namespace

void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  switch (a) {
    case Activation::linear:
      if (x != y) std::copy(x, x + n, y);
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
      return;
    case Activation::sigmoid:
      // exp(-x) overflows to inf for very negative x, which still gives the right limit 0.
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      return;
    case Activation::softmax:
      softmax_rows(x, y, rows, cols);
      return;
  }
}

void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                         int64_t cols) {
  const int64_t n = rows * cols;
  switch (a) {
    case Activation::linear:
      if (dy != dx) std::copy(dy, dy + n, dx);
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
      return;
    case Activation::sigmoid:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
      return;
    case Activation::softmax:
      // dx_j = y_j * (dy_j - sum_k dy_k y_k), the softmax Jacobian applied row by row.
      for (int64_t r = 0; r < rows; ++r) {
        const float* yr = y + r * cols;
        const float* dyr = dy + r * cols;
        float* dxr = dx + r * cols;
        float dot = 0;
        for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
        for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
      }
      return;
  }
}

}  // namespace trainrr
