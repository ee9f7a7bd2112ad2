#pragma once
// A layer of a Sequential model: builds its parameters for an input shape, runs forward and backward
// through kernels selected at its sites, and shows its parameters to the optimizer.
// Sites are "<layer name>/<op>.<phase>", e.g. "dense_1/matmul.fwd"; probes add ":out".

#include <memory>
#include <string>
#include <vector>

#include "engine/result.h"
#include "engine/runtime.h"
#include "engine/tensor.h"

namespace trainrr {

struct Param {
  std::string name;  // "<layer>.<param>", e.g. "dense_1.kernel"
  Tensor value;
  Tensor grad;  // same shape; written by backward
};

class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;

  const std::string& name() const { return name_; }
  virtual std::string type() const = 0;  // Keras' class name: "Dense", "Conv2D", ...

  // Creates the parameters for a sample shape (no batch dimension) and returns the output sample shape.
  // Initializers draw from rt.rng at site "init/<layer>.<param>". An input that does not fit is an error
  // that names this layer and the shape it got.
  virtual Result<Shape> build(const Shape& input, Runtime& rt) = 0;

  // x: [batch, ...input]. Keeps what backward needs. Returns y, a tensor the layer owns and reuses: valid
  // until the layer's next forward. (Fresh tensors every step cost an allocation, a zero fill and, for
  // large ones, page faults.)
  virtual const Tensor& forward(const Tensor& x, Runtime& rt, bool training) = 0;
  // dy: [batch, ...output]. Writes the parameters' grads and returns dx, owned by the layer and valid until
  // its next backward; or an empty tensor when no input gradient is wanted (see set_needs_input_grad).
  virtual const Tensor& backward(const Tensor& dy, Runtime& rt) = 0;

  // Below the first layer with parameters nobody reads an input gradient (the model's input is data): the
  // model turns dx off there, and layers then skip its computation, its kernel and its probes.
  void set_needs_input_grad(bool needed) { needs_input_grad_ = needed; }
  bool needs_input_grad() const { return needs_input_grad_; }

  virtual std::vector<Param*> params() { return {}; }
  // Non-trainable state saved with checkpoints (batch normalization's moving statistics).
  virtual std::vector<NamedTensor*> state() { return {}; }

 protected:
  // What backward returns when no input gradient is wanted.
  const Tensor& no_input_grad() const { return no_input_grad_; }

 private:
  std::string name_;
  bool needs_input_grad_ = true;
  Tensor no_input_grad_;  // always empty
};

}  // namespace trainrr
