#include "engine/layers/layers.h"

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

Status check_positive(const std::string& layer, const char* what, const std::array<int64_t, 2>& v) {
  if (v[0] <= 0 || v[1] <= 0) return Error{layer + ": " + what + " must be positive, got " + pair_str(v)};
  return {};
}

}  // namespace

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

  if (t == "Dense") {
    if (spec.units <= 0) return Error{name + ": units must be positive, got " + std::to_string(spec.units)};
    auto act = parse_activation(spec.activation);
    if (!act) return named(name, act.error());
    auto init = parse_initializer(spec.kernel_initializer);
    if (!init) return named(name, init.error());
    return std::unique_ptr<Layer>(std::make_unique<Dense>(name, spec.units, *act, *init, spec.use_bias));
  }
  if (t == "Conv2D") {
    if (spec.filters <= 0)
      return Error{name + ": filters must be positive, got " + std::to_string(spec.filters)};
    if (Status s = check_positive(name, "kernel_size", spec.kernel_size); !s) return s.error();
    if (Status s = check_positive(name, "strides", spec.strides); !s) return s.error();
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
    if (Status s = check_positive(name, "pool_size", spec.pool_size); !s) return s.error();
    if (Status s = check_positive(name, "strides", strides); !s) return s.error();
    auto pad = parse_padding(spec.padding);
    if (!pad) return named(name, pad.error());
    return std::unique_ptr<Layer>(std::make_unique<MaxPool2D>(name, spec.pool_size, strides, *pad));
  }
  if (t == "Flatten") return std::unique_ptr<Layer>(std::make_unique<Flatten>(name));
  if (t == "Dropout") {
    if (!(spec.rate >= 0 && spec.rate < 1))
      return Error{name + ": rate must be in [0, 1), got " + std::to_string(spec.rate)};
    return std::unique_ptr<Layer>(std::make_unique<Dropout>(name, spec.rate));
  }
  if (t == "BatchNormalization") {
    if (!(spec.momentum >= 0 && spec.momentum <= 1))
      return Error{name + ": momentum must be in [0, 1], got " + std::to_string(spec.momentum)};
    if (!(spec.epsilon > 0))
      return Error{name + ": epsilon must be positive, got " + std::to_string(spec.epsilon)};
    return std::unique_ptr<Layer>(std::make_unique<BatchNormalization>(name, spec.momentum, spec.epsilon));
  }
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
