#include "engine/layers/layers.h"

#include <charconv>
#include <string>

#include "engine/choice.h"
#include "engine/layers/activation_layer.h"
#include "engine/layers/activations.h"
#include "engine/layers/batch_normalization.h"
#include "engine/layers/conv2d.h"
#include "engine/layers/dense.h"
#include "engine/layers/dropout.h"
#include "engine/layers/flatten.h"
#include "engine/layers/initializers.h"
#include "engine/layers/max_pool2d.h"
#include "engine/layers/padding.h"

namespace trainrr {

namespace {

std::string pair_str(const std::array<int64_t, 2>& v) { return shape_str({v[0], v[1]}); }

Error named(const std::string& layer, const Error& e) { return Error{layer + ": " + e.message}; }

std::string num(double v) { return setting_number(v); }

}  // namespace

std::optional<LayerValueProblem> layer_value_problem(const LayerSpec& spec) {
  const std::string& t = spec.type;
  auto positive = [](const char* key, const std::array<int64_t, 2>& v) -> std::optional<LayerValueProblem> {
    if (v[0] > 0 && v[1] > 0) return std::nullopt;
    return LayerValueProblem{key, "must be positive, got " + pair_str(v)};
  };
  if (t == "Dense" && spec.units <= 0)
    return LayerValueProblem{"units", "must be positive, got " + std::to_string(spec.units)};
  if (t == "Conv2D") {
    if (spec.filters <= 0)
      return LayerValueProblem{"filters", "must be positive, got " + std::to_string(spec.filters)};
    if (auto p = positive("kernel_size", spec.kernel_size)) return p;
    if (auto p = positive("strides", spec.strides)) return p;
  }
  if (t == "MaxPool2D" || t == "MaxPooling2D") {
    if (auto p = positive("pool_size", spec.pool_size)) return p;
    if (auto p = positive("strides", spec.strides_given ? spec.strides : spec.pool_size)) return p;
  }
  if (t == "Dropout" && !(spec.rate >= 0 && spec.rate < 1))
    return LayerValueProblem{"rate", "must be in [0, 1), got " + num(spec.rate)};
  if (t == "BatchNormalization") {
    if (!(spec.momentum >= 0 && spec.momentum <= 1))
      return LayerValueProblem{"momentum", "must be in [0, 1], got " + num(spec.momentum)};
    if (!(spec.epsilon > 0))
      return LayerValueProblem{"epsilon", "must be positive, got " + num(spec.epsilon)};
  }
  return std::nullopt;
}

Result<std::unique_ptr<Layer>> make_layer(const LayerSpec& spec) {
  const std::string& t = spec.type;
  // Keras' default names: the snake_case class name (the model numbers them).
  std::string name = spec.name;
  if (name.empty()) {
    if (t == "Dense")
      name = "dense";
    else if (t == "Conv2D")
      name = "conv2d";
    else if (t == "MaxPool2D" || t == "MaxPooling2D")
      name = "max_pooling2d";
    else if (t == "Flatten")
      name = "flatten";
    else if (t == "Dropout")
      name = "dropout";
    else if (t == "BatchNormalization")
      name = "batch_normalization";
    else if (t == "Activation")
      name = "activation";
  }

  if (auto problem = layer_value_problem(spec))
    return Error{name + ": " + problem->key + " " + problem->what};
  if (t == "Dense") {
    auto act = parse_activation(spec.activation);
    if (!act) return named(name, act.error());
    auto init = parse_initializer(spec.kernel_initializer);
    if (!init) return named(name, init.error());
    return std::unique_ptr<Layer>(std::make_unique<Dense>(name, spec.units, *act, *init, spec.use_bias));
  }
  if (t == "Conv2D") {
    auto pad = parse_padding(spec.padding);
    if (!pad) return named(name, pad.error());
    auto act = parse_activation(spec.activation);
    if (!act) return named(name, act.error());
    auto init = parse_initializer(spec.kernel_initializer);
    if (!init) return named(name, init.error());
    return std::unique_ptr<Layer>(std::make_unique<Conv2D>(name, spec.filters, spec.kernel_size, spec.strides,
                                                           *pad, *act, *init, spec.use_bias));
  }
  if (t == "MaxPool2D" || t == "MaxPooling2D") {
    const std::array<int64_t, 2> strides = spec.strides_given ? spec.strides : spec.pool_size;
    auto pad = parse_padding(spec.padding);
    if (!pad) return named(name, pad.error());
    return std::unique_ptr<Layer>(std::make_unique<MaxPool2D>(name, spec.pool_size, strides, *pad));
  }
  if (t == "Flatten") return std::unique_ptr<Layer>(std::make_unique<Flatten>(name));
  if (t == "Dropout") return std::unique_ptr<Layer>(std::make_unique<Dropout>(name, spec.rate));
  if (t == "BatchNormalization")
    return std::unique_ptr<Layer>(std::make_unique<BatchNormalization>(name, spec.momentum, spec.epsilon));
  if (t == "Activation") {
    auto act = parse_activation(spec.activation);
    if (!act) return named(name, act.error());
    return std::unique_ptr<Layer>(std::make_unique<ActivationLayer>(name, *act));
  }
  return Error{unknown_choice("layer type", t,
                              {"Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "BatchNormalization",
                               "Activation"})};
}

}  // namespace trainrr
