#include "engine/model.h"

#include <map>
#include <new>
#include <set>
#include <stdexcept>

#include "engine/escape.h"

namespace trainrr {
namespace {

// Keras' automatic layer names: the class name in snake case.
std::string snake_name(const std::string& type) {
  if (type == "Conv2D") return "conv2d";
  if (type == "MaxPool2D" || type == "MaxPooling2D") return "max_pooling2d";
  if (type == "BatchNormalization") return "batch_normalization";
  std::string out;
  for (char c : type) {
    if (std::isupper(static_cast<unsigned char>(c)) && !out.empty()) out += '_';
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::vector<std::string> layer_names(const std::vector<LayerSpec>& specs) {
  std::set<std::string> given;
  for (const LayerSpec& s : specs)
    if (!s.name.empty()) given.insert(s.name);
  std::vector<std::string> names;
  std::map<std::string, int> counts;
  for (const LayerSpec& s : specs) {
    if (!s.name.empty()) {
      names.push_back(s.name);
      continue;
    }
    // The next number whose name no layer is given: a layer named dense_1 leaves dense_2 to the first Dense
    // layer without a name.
    const std::string base = snake_name(s.type);
    std::string name;
    do name = base + "_" + std::to_string(++counts[base]);
    while (given.count(name));
    names.push_back(name);
  }
  return names;
}

Result<Sequential> Sequential::from_specs(const std::vector<LayerSpec>& specs) {
  Sequential m;
  const std::vector<std::string> names = layer_names(specs);
  for (size_t i = 0; i < specs.size(); ++i) {
    LayerSpec s = specs[i];
    s.name = names[i];
    // A value out of range is said where the configuration gave it, as every other value error is.
    if (const auto problem = layer_value_problem(s); problem && s.sources.count(problem->key))
      return Error{s.sources.at(problem->key) + " " + problem->what};
    auto layer = make_layer(s);
    if (!layer) return Error{"model.layers[" + std::to_string(i) + "]: " + layer.error().message};
    for (const auto& l : m.layers_)
      if (l->name() == s.name) return Error{"model.layers[" + std::to_string(i) + "]: the name '" + s.name + "' is used twice"};
    m.layers_.push_back(std::move(layer).value());
  }
  return m;
}

Result<Shape> Sequential::build(const Shape& input, Runtime& rt, bool reshaped) {
  Shape shape = input;
  output_shapes_.clear();
  // A layer's input gradient is wanted only when a layer before it has parameters to train: below the
  // first such layer (Flatten, Dropout, ... on the input) it would be computed and thrown away.
  bool params_below = false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Result<Shape> out = Error{""};
    try {
      out = layers_[i]->build(shape, rt);
    } catch (const std::bad_alloc&) {
      return Error{layers_[i]->name() + ": its parameters for input shape " + shape_str(shape) +
                   " do not fit in this machine's memory"};
    } catch (const std::length_error&) {
      return Error{layers_[i]->name() + ": its parameters for input shape " + shape_str(shape) +
                   " are too large"};
    }
    // A model larger than a replay takes is no matter of its shapes: said as the budget says it.
    if (!out && rt.over_budget) return out.error();
    if (!out) {
      // Named as the configuration names it (model.layers[0]), and by the name the run header shows.
      const std::string at = "layer shapes do not fit at model.layers[" + std::to_string(i) + "]: ";
      // The first layer's input is the data's samples, which data.reshape shapes.
      if (i == 0)
        return Error{at + out.error().message + " (its input is the data's samples, of shape " +
                     shape_str(shape) +
                     (reshaped ? ", as data.reshape gives them)" : "; data.reshape gives them another)")};
      return Error{at + out.error().message + " (input from " + layers_[i - 1]->name() + ", shape " +
                   shape_str(shape) + ")"};
    }
    shape = *out;
    output_shapes_.push_back(shape);
    layers_[i]->set_needs_input_grad(params_below);
    params_below = params_below || !layers_[i]->params().empty();
  }
  return shape;
}

Tensor Sequential::forward(const Tensor& x, Runtime& rt, bool training) {
  // Each layer's output is a tensor it owns, read by the next layer in place.
  const Tensor* h = &x;
  for (auto& layer : layers_) h = &layer->forward(*h, rt, training);
  return *h;
}

void Sequential::backward(const Tensor& dy, Runtime& rt) {
  const Tensor* g = &dy;
  for (size_t i = layers_.size(); i-- > 0;) {
    g = &layers_[i]->backward(*g, rt);
    if (!layers_[i]->needs_input_grad()) break;  // nothing below has parameters
  }
}

std::vector<Param*> Sequential::params() {
  std::vector<Param*> out;
  for (auto& l : layers_)
    for (Param* p : l->params()) out.push_back(p);
  return out;
}

std::vector<NamedTensor> Sequential::tensors() {
  std::vector<NamedTensor> out;
  for (Param* p : params()) out.push_back({p->name, Tensor(p->value.shape, p->value.data)});
  for (auto& l : layers_)
    for (NamedTensor* t : l->state()) out.push_back({t->name, Tensor(t->value.shape, t->value.data)});
  return out;
}

void Sequential::to_device(DeviceBackend& device) {
  for (Param* p : params()) {
    trainrr::to_device(device, p->value);
    trainrr::to_device(device, p->grad);
  }
  for (auto& l : layers_)
    for (NamedTensor* t : l->state()) trainrr::to_device(device, t->value);
}

void Sequential::to_host(DeviceBackend& device, bool grads) {
  for (Param* p : params()) {
    trainrr::to_host(device, p->value);
    if (grads) trainrr::to_host(device, p->grad);
  }
  for (auto& l : layers_)
    for (NamedTensor* t : l->state()) trainrr::to_host(device, t->value);
}

Status Sequential::restore(const std::vector<NamedTensor>& tensors) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& t : tensors) by_name[t.name] = &t.value;
  auto put = [&](const std::string& name, Tensor& dst) -> Status {
    auto it = by_name.find(name);
    if (it == by_name.end()) return Error{"checkpoint has no tensor '" + name + "'"};
    if (it->second->shape != dst.shape)
      return Error{"checkpoint tensor '" + name + "' has shape " + shape_str(it->second->shape) + ", the model " +
                   shape_str(dst.shape)};
    dst = *it->second;
    return {};
  };
  for (Param* p : params())
    if (Status s = put(p->name, p->value); !s) return s;
  for (auto& l : layers_)
    for (NamedTensor* t : l->state())
      if (Status s = put(t->name, t->value); !s) return s;
  return {};
}

std::string Sequential::summary() const {
  // As Keras counts: a layer's count holds all its weights, the trained parameters and the state it keeps
  // without training (batch normalization's moving mean and variance), and the totals tell them apart.
  std::string out;
  int64_t trainable = 0, non_trainable = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    int64_t count = 0;
    for (Param* p : layers_[i]->params()) {
      count += p->value.size();
      trainable += p->value.size();
    }
    for (NamedTensor* t : layers_[i]->state()) {
      count += t->value.size();
      non_trainable += t->value.size();
    }
    // The name comes from a configuration, perhaps one a trace holds: escaped as every string from a file
    // that reaches a terminal is.
    out += "  " + inline_text(layers_[i]->name()) + " (" + layers_[i]->type() + ") -> " +
           (i < output_shapes_.size() ? shape_str(output_shapes_[i]) : "?") + ", " + std::to_string(count) +
           " params\n";
  }
  out += "  Total params: " + std::to_string(trainable + non_trainable) + "\n";
  out += "  Trainable params: " + std::to_string(trainable) + "\n";
  out += "  Non-trainable params: " + std::to_string(non_trainable) + "\n";
  return out;
}

}  // namespace trainrr
