#include "engine/layers/activations.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/choice.h"
#include "engine/layers/layer_util.h"

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
  // Keras' other activations, which are not misspellings of these.
  return Error{unknown_choice(
      "activation", name, {"linear", "relu", "sigmoid", "tanh", "softmax"},
      {"gelu",        "elu",          "selu",      "swish",       "silu",       "softplus",  "softsign",
       "exponential", "hard_sigmoid", "hard_silu", "hard_swish",  "leaky_relu", "relu6",     "mish",
       "log_softmax", "celu",         "glu",       "tanh_shrink", "sparsemax",  "squareplus"})};
}

namespace {

template <class M>
void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    // Subtracting the row maximum keeps exp() finite for any logits.
    const float m = *std::max_element(xr, xr + cols);
    float sum = 0;
    for (int64_t j = 0; j < cols; ++j) {
      yr[j] = M::exp(xr[j] - m);
      sum += yr[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
  }
}

// The elementwise loops come in an in-place and an out-of-place form so that neither leaves the compiler
// in doubt about aliasing: both vectorise.
void relu_inplace(float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}
void relu(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
// dy is read whatever the sign: a load under the condition would keep the loop scalar (and branchy).
void relu_grad_inplace(const float* __restrict y, float* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = dx[i];
    dx[i] = y[i] > 0.0f ? d : 0.0f;
  }
}
void relu_grad(const float* __restrict y, const float* __restrict dy, float* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = dy[i];
    dx[i] = y[i] > 0.0f ? d : 0.0f;
  }
}

template <class M>
void forward_rows(Activation a, const float* x, float* y, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  switch (a) {
    case Activation::linear:
      if (x != y) std::copy(x, x + n, y);
      return;
    case Activation::relu:
      return x == y ? relu_inplace(y, n) : relu(x, y, n);
    case Activation::sigmoid:
      // exp(-x) overflows to inf for very negative x, which still gives the right limit 0.
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + M::exp(-x[i]));
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = M::tanh(x[i]);
      return;
    case Activation::softmax:
      softmax_rows<M>(x, y, rows, cols);
      return;
  }
}

void backward_rows(Activation a, const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  switch (a) {
    case Activation::linear:
      if (dy != dx) std::copy(dy, dy + n, dx);
      return;
    case Activation::relu:
      return dy == dx ? relu_grad_inplace(y, dx, n) : relu_grad(y, dy, dx, n);
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

void forward_rows(MathFamily math, Activation a, const float* x, float* y, int64_t rows, int64_t cols) {
  if (math == MathFamily::portable)
    forward_rows<PortableMath>(a, x, y, rows, cols);
  else
    forward_rows<LibmMath>(a, x, y, rows, cols);
}

}  // namespace

void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols, ThreadPool* pool,
                        MathFamily math) {
  for_row_chunks(pool, rows, cols, [&](int64_t r0, int64_t r1) {
    forward_rows(math, a, x + r0 * cols, y + r0 * cols, r1 - r0, cols);
  });
}

void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                         ThreadPool* pool) {
  for_row_chunks(pool, rows, cols, [&](int64_t r0, int64_t r1) {
    backward_rows(a, y + r0 * cols, dy + r0 * cols, dx + r0 * cols, r1 - r0, cols);
  });
}

void bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                             ThreadPool* pool, MathFamily math) {
  // Rows of about a thousand elements at a time, so that the activation reads what the bias wrote from L1.
  const int64_t block = std::max<int64_t>(1, 1024 / std::max<int64_t>(cols, 1));
  for_row_chunks(pool, rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
      const int64_t b1 = std::min(r1, b0 + block);
      if (bias) add_bias_rows(y, bias, b0, b1, cols);
      if (a != Activation::linear) forward_rows(math, a, y + b0 * cols, y + b0 * cols, b1 - b0, cols);
    }
  });
}

}  // namespace trainrr
