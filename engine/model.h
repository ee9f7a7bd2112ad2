#pragma once
// A Sequential model: layers applied in order, built for a sample shape.

#include <memory>
#include <string>
#include <vector>

#include "engine/device_backend.h"
#include "engine/layers/layers.h"

namespace trainrr {

// Each layer's name: its own, or the one Keras gives a layer that has none (dense_1, conv2d_1, ...): the next
// number of its type whose name no layer is given.
std::vector<std::string> layer_names(const std::vector<LayerSpec>& specs);

class Sequential {
 public:
  // Names layers that have none the way Keras does (dense_1, conv2d_1, ...). Unknown types are errors.
  static Result<Sequential> from_specs(const std::vector<LayerSpec>& specs);

  // Creates every parameter for a sample shape (no batch dimension); returns the output sample shape.
  // A layer whose input does not fit is an error naming it, the layer before it and both shapes.
  // Layers with no trainable layer before them are told that no input gradient is needed.
  // `reshaped`: the input shape is the one data.reshape gives the samples (for the message of a first layer
  // that does not fit it).
  Result<Shape> build(const Shape& input, Runtime& rt, bool reshaped = false);

  Tensor forward(const Tensor& x, Runtime& rt, bool training);
  // Back-propagates d loss / d output; leaves every parameter's grad set. Gradients below the first layer
  // with parameters (the model's input gradient among them) are not computed.
  void backward(const Tensor& dy, Runtime& rt);

  std::vector<Param*> params();
  // Parameters then non-trainable state, as named tensors (checkpoints): host copies (in a run on a device,
  // after to_host).
  std::vector<NamedTensor> tensors();
  // A run on a device: every parameter, gradient and state tensor given device storage with its host values
  // (after build or restore), and back (`grads`: the gradients too).
  void to_device(DeviceBackend& device);
  void to_host(DeviceBackend& device, bool grads);
  Status restore(const std::vector<NamedTensor>& tensors);

  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  // Each layer's output sample shape, as build found them.
  const std::vector<Shape>& output_shapes() const { return output_shapes_; }
  // One line per layer: name, type, output shape, the count of all its weights (trained parameters and
  // state such as moving statistics); then the total, trainable and non-trainable counts, as Keras prints
  // them.
  std::string summary() const;

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> output_shapes_;
};

}  // namespace trainrr
