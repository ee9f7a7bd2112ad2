#pragma once
// The layers a configuration can name, built from a plain description.

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/layers/layer.h"

namespace trainrr {

struct LayerSpec {
  std::string type;   // Dense | Conv2D | MaxPool2D | Flatten | Dropout | BatchNormalization | Activation
  std::string name;   // set by the model when empty: dense_1, conv2d_1, ...
  int64_t units = 0;  // Dense
  std::string activation = "linear";  // Dense, Conv2D, Activation: linear|relu|sigmoid|tanh|softmax
  int64_t filters = 0;                // Conv2D
  std::array<int64_t, 2> kernel_size{3, 3};
  std::array<int64_t, 2> strides{1, 1};    // Conv2D; MaxPool2D defaults to pool_size
  std::array<int64_t, 2> pool_size{2, 2};  // MaxPool2D
  bool strides_given = false;
  std::string padding = "valid";  // valid | same
  double rate = 0;                // Dropout
  double momentum = 0.99;         // BatchNormalization (Keras defaults)
  double epsilon = 1e-3;
  std::string kernel_initializer =
      "glorot_uniform";  // glorot_uniform|glorot_normal|he_normal|he_uniform|zeros
  bool use_bias = true;
  // Where the configuration gave each key ("run.toml:12: model.layers[0].units", "run.toml (--set): ..."),
  // for the model's errors about their values; empty for a spec built in code.
  std::map<std::string, std::string> sources;
};

// A setting of a layer out of its range: the key and what is wrong with its value ("must be positive, got
// -3", numbers as short as they read back: 2, not 2.000000).
struct LayerValueProblem {
  std::string key;  // "units", "rate", ...
  std::string what;
};
// The first setting of `spec`'s type that is out of range (units, filters, kernel_size, strides, pool_size,
// rate, momentum, epsilon), or nullopt. make_layer refuses it; the model names the file and line of the key
// from LayerSpec::sources.
std::optional<LayerValueProblem> layer_value_problem(const LayerSpec& spec);

// An unknown type, activation, initializer or padding is an error that names it, and so is a value out of
// range ("dense_1: units must be positive, got -3").
Result<std::unique_ptr<Layer>> make_layer(const LayerSpec& spec);

}  // namespace trainrr
