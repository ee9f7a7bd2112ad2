#include "engine/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "engine/choice.h"
#include "engine/data/file_io.h"
#include "engine/data/split.h"
#include "engine/device.h"
#include "engine/escape.h"
#include "engine/layers/activations.h"
#include "engine/layers/initializers.h"
#include "engine/layers/loss.h"
#include "engine/layers/padding.h"

namespace trainrr {
namespace {

namespace fs = std::filesystem;

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date or time";
  }
}

// What a value of the wrong type is, for a message: its type, and a string's text too (a --set value that is
// not TOML, `.001` say, is taken as text: the message shows it).
std::string got(const toml::node& n) {
  std::string out = type_name(n);
  if (n.is_string()) {
    const std::string text = inline_text(*n.value<std::string>());
    out += " (\"" + (text.size() > 60 ? text.substr(0, 60) + "..." : text) + "\")";
  }
  return out;
}

// Reads one table's keys, remembering which it knew, so that what is left over is reported as unknown.
}  // namespace

std::string new_run_problem(const RunConfig& config) {
  return config.float32_problems.empty() ? std::string() : config.float32_problems.front();
}

const std::map<std::string, std::string>& fixed_table_keys() {
  static const std::map<std::string, std::string> kTables = [] {
    std::map<std::string, std::string> m;
    const std::pair<const char*, std::vector<const char*>> tables[] = {
        {"", {"seed", "data", "augment", "model", "train", "runtime", "distributed"}},
        {"data.",
         {"source", "path", "reshape", "test_fraction", "stratify", "split", "scale", "label", "labels",
          "shape", "classes", "samples"}},
        {"augment.", {"noise_stddev", "flip", "shift"}},
        {"model.", {"layers"}},
        {"train.",
         {"epochs", "batch_size", "shuffle", "loss", "from_logits", "validation_split", "optimizer"}},
        {"train.optimizer.",
         {"learning_rate", "momentum", "nesterov", "beta_1", "beta_2", "epsilon", "weight_decay", "rho",
          "centered"}},
        {"runtime.", {"threads", "policy", "device", "tf32"}},
        {"distributed.", {"shards", "allreduce"}}};
    for (const auto& [prefix, keys] : tables)
      for (const char* k : keys) m.emplace(k, std::string(prefix) + k);
    return m;
  }();
  return kTables;
}

namespace {

// Where `key` belongs when it is a key of a fixed table; empty otherwise.
std::string table_of_key(const std::string& key) {
  const auto it = fixed_table_keys().find(key);
  return it == fixed_table_keys().end() ? std::string() : it->second;
}

class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, const std::string& file,
              const std::set<std::string>& overridden, std::string* error)
      : table_(table), prefix_(std::move(prefix)), file_(file), overridden_(overridden), error_(error) {}

  std::string where(const toml::node& n, const std::string& key) const {
    const std::string full = prefix_ + key;
    auto from_set = [&] {
      // The key itself, or a key inside a value --set gave (--set 'model.layers=[{...}]').
      for (const std::string& k : overridden_)
        if (full.rfind(k, 0) == 0 && (full.size() == k.size() || full[k.size()] == '.' || full[k.size()] == '['))
          return true;
      // A table that exists only because --set created it (--set a.b.c=1 makes a.b).
      auto it = overridden_.lower_bound(full + ".");
      return it != overridden_.end() && it->rfind(full + ".", 0) == 0 && n.source().begin.line == 0;
    };
    if (from_set()) return file_ + " (--set): " + full;
    return file_ + ":" + std::to_string(n.source().begin.line) + ": " + full;
  }

  bool fail(const std::string& msg) {
    if (error_->empty()) *error_ = msg;
    return false;
  }

  bool has(const std::string& key) const { return table_.contains(key); }

  const toml::node* node(const std::string& key) {
    known_.insert(key);
    return table_.get(key);
  }

  bool get(const std::string& key, std::string& out) {
    const toml::node* n = node(key);
    if (!n) return true;
    if (auto v = n->value<std::string>(); v && n->is_string()) {
      out = *v;
      return true;
    }
    return fail(where(*n, key) + " must be a string, got " + type_name(*n));
  }
  bool get(const std::string& key, bool& out) {
    const toml::node* n = node(key);
    if (!n) return true;
    if (n->is_boolean()) {
      out = *n->value<bool>();
      return true;
    }
    return fail(where(*n, key) + " must be true or false, got " + got(*n));
  }
  bool get(const std::string& key, int64_t& out) {
    const toml::node* n = node(key);
    if (!n) return true;
    if (n->is_integer()) {
      out = *n->value<int64_t>();
      return true;
    }
    return fail(where(*n, key) + " must be an integer, got " + got(*n));
  }
  bool get(const std::string& key, int& out) {
    int64_t v = out;
    if (!get(key, v)) return false;
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
      return fail(where(*table_.get(key), key) + " is out of range, got " + std::to_string(v));
    out = static_cast<int>(v);
    return true;
  }
  bool get(const std::string& key, double& out) {
    const toml::node* n = node(key);
    if (!n) return true;
    if (n->is_integer() || n->is_floating_point()) {
      const double v = *n->value<double>();
      // No setting takes an infinity or a NaN; one would only surface later as a run of NaN losses.
      if (!std::isfinite(v))
        return fail(where(*n, key) + " must be a finite number, got " +
                    (std::isnan(v) ? "nan"
                     : v > 0       ? "inf"
                                   : "-inf"));
      // Every setting ends up in float32 arithmetic, where a larger value is an infinity.
      if (std::fabs(v) > std::numeric_limits<float>::max())
        return fail(where(*n, key) + " is too large: float32 holds at most 3.4e38");
      out = v;
      return true;
    }
    return fail(where(*n, key) + " must be a number, got " + got(*n));
  }
  bool get(const std::string& key, Shape& out) {
    const toml::node* n = node(key);
    if (!n) return true;
    const toml::array* a = n->as_array();
    if (!a) return fail(where(*n, key) + " must be an array of integers, got " + got(*n));
    out.clear();
    for (const auto& e : *a) {
      if (!e.is_integer() || *e.value<int64_t>() < 1)
        return fail(where(*n, key) + " must be an array of positive integers");
      out.push_back(*e.value<int64_t>());
    }
    return true;
  }
  // An integer, or an array of two: Keras' kernel_size=3 or kernel_size=(3, 3).
  bool get(const std::string& key, std::array<int64_t, 2>& out, bool* given = nullptr) {
    const toml::node* n = node(key);
    if (!n) return true;
    if (given) *given = true;
    if (n->is_integer() && *n->value<int64_t>() >= 1) {
      out = {*n->value<int64_t>(), *n->value<int64_t>()};
      return true;
    }
    const toml::array* a = n->as_array();
    if (a && a->size() == 2 && (*a)[0].is_integer() && (*a)[1].is_integer() &&
        *(*a)[0].value<int64_t>() >= 1 && *(*a)[1].value<int64_t>() >= 1) {
      out = {*(*a)[0].value<int64_t>(), *(*a)[1].value<int64_t>()};
      return true;
    }
    return fail(where(*n, key) + " must be a positive integer or an array of two");
  }
  const toml::table* table(const std::string& key) {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    if (!n->is_table()) {
      fail(where(*n, key) + " must be a table, got " + got(*n));
      return nullptr;
    }
    return n->as_table();
  }
  // Reports the first key this reader was not asked for. `owner` ("a Dense layer", "the adam optimizer")
  // says whose keys were asked for, when a key may belong to another kind of layer, optimizer or source;
  // `elsewhere`, when given, says whose key it is instead ("Dropout layers"), or nothing.
  bool finish(const std::string& owner = "",
              const std::function<std::string(const std::string&)>& elsewhere = {}) {
    for (const auto& [k, v] : table_) {
      const std::string key(k.str());
      if (known_.count(key)) continue;
      std::string msg = where(v, key);
      msg = msg.substr(0, msg.size() - (prefix_ + key).size()) + "unknown key '" + prefix_ + key + "'";
      if (!owner.empty()) {
        std::string keys;
        for (const auto& k2 : known_) keys += (keys.empty() ? "" : ", ") + k2;
        msg += " for " + owner + " (its keys: " + keys + ")";
      }
      // A key of another kind of layer or optimizer is not a misspelling of one of these.
      if (const std::string whose = elsewhere ? elsewhere(key) : ""; !whose.empty())
        return fail(msg + " ('" + key + "' is a key of " + whose + ")");
      // A key of another table given here ('epochs' at the top, 'optimizer' under [runtime]).
      if (const std::string there = table_of_key(key); !there.empty() && there != prefix_ + key)
        return fail(msg + " (did you mean '" + there + "'?)");
      std::string best = closest_choice(key, std::vector<std::string>(known_.begin(), known_.end()));
      // A longer or shorter form of a table's name: 'training' for 'train', 'run' for 'runtime'.
      if (best.empty())
        for (const auto& cand : known_)
          if (std::min(key.size(), cand.size()) >= 3 && (key.starts_with(cand) || cand.starts_with(key)))
            best = cand;
      if (!best.empty()) msg += " (did you mean '" + prefix_ + best + "'?)";
      return fail(msg);
    }
    return true;
  }

 private:
  const toml::table& table_;
  std::string prefix_;
  const std::string& file_;
  const std::set<std::string>& overridden_;
  std::string* error_;
  std::set<std::string> known_;
};

Status apply_override(toml::table& root, const std::string& assignment, std::set<std::string>& overridden) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    return Error{"--set " + assignment + ": expected key=value, e.g. --set train.epochs=5"};
  const std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error& e) {
    // A bare word is taken as a string (--set runtime.policy=deterministic); a value that opens an array,
    // a table or a quoted string was meant as TOML, and its mistake is reported.
    const size_t first = value.find_first_not_of(" \t");
    if (first != std::string::npos && std::string_view("[{\"'").find(value[first]) != std::string_view::npos)
      return Error{"--set " + assignment + ": the value is not valid TOML: " + std::string(e.description())};
    parsed = toml::table{{"v", value}};
  }
  auto bad = [&](const std::string& what) { return Error{"--set " + assignment + ": " + what}; };
  toml::table* t = &root;
  size_t start = 0;
  for (;;) {
    const size_t dot = key.find('.', start);
    const bool last = dot == std::string::npos;
    const std::string path = key.substr(0, dot);  // the key so far
    std::string part = key.substr(start, last ? std::string::npos : dot - start);
    if (part.empty()) return bad("empty key part in '" + key + "'");
    // "layers[1]": an element of an array (--set model.layers[1].rate=0).
    std::optional<size_t> index;
    if (const size_t open = part.find('['); open != std::string::npos) {
      const std::string digits = part.substr(open + 1, part.size() - open - 2);
      size_t i = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), i);
      const bool whole = ec == std::errc() && end == digits.data() + digits.size();
      if (part.back() != ']' || open == 0 || digits.empty() || !whole)
        return bad("'" + part + "' is not NAME[INDEX]");
      index = i;
      part.resize(open);
    }
    if (index) {
      toml::array* a = t->get(part) ? t->get(part)->as_array() : nullptr;
      const std::string array_path = path.substr(0, path.rfind('['));
      if (!a) return bad("'" + array_path + "' is not an array");
      if (*index >= a->size())
        return bad("'" + array_path + "' has " + std::to_string(a->size()) +
                   (a->size() == 1 ? " entry" : " entries") + ", so [" + std::to_string(*index) +
                   "] is past its end (entries count from 0)");
      if (last) {
        a->replace(a->cbegin() + static_cast<std::ptrdiff_t>(*index), *parsed.get("v"));
        break;
      }
      toml::node& element = (*a)[*index];
      if (!element.is_table()) return bad("'" + path + "' is not a table");
      t = element.as_table();
      start = dot + 1;
      continue;
    }
    if (last) {
      t->insert_or_assign(part, *parsed.get("v"));
      break;
    }
    toml::node* next = t->get(part);
    if (!next) next = &t->insert_or_assign(part, toml::table{}).first->second;
    if (next->is_array() && !last) {
      // "model.layers.0.rate": an entry of an array is named with brackets.
      const size_t after = key.find('.', dot + 1);
      const std::string entry =
          key.substr(dot + 1, after == std::string::npos ? std::string::npos : after - dot - 1);
      const bool number = !entry.empty() && entry.find_first_not_of("0123456789") == std::string::npos;
      const std::string named =
          number ? path + "[" + entry + "]" + (after == std::string::npos ? "" : key.substr(after))
                 : path + "[0]." + key.substr(dot + 1);
      return bad("'" + path + "' is an array: name one of its entries, as in " + named);
    }
    if (!next->is_table()) return bad("'" + path + "' is not a table");
    t = next->as_table();
    start = dot + 1;
  }
  overridden.insert(key);
  return {};
}

std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute() || base_dir.empty()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

// The data source a path's name implies: .npy, IDX (MNIST's "train-images-idx3-ubyte", also as
// "train-images.idx3-ubyte" or .gz), else CSV; without a path, synthetic data when its keys are given.
std::string infer_source(const std::string& path, bool synthetic_keys) {
  if (path.empty()) return synthetic_keys ? "synthetic" : "csv";
  const std::string file = fs::path(path).filename().string();
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".npy") return "npy";
  if (ext == ".csv") return "csv";
  if (ext.rfind(".idx", 0) == 0 || ext == ".ubyte" || file.find("-idx") != std::string::npos ||
      file.find("ubyte") != std::string::npos)
    return "idx";
  return "csv";
}

// The keys each layer type takes (besides type and name), and those it cannot do without, as in Keras.
struct LayerKeys {
  std::vector<std::string> keys;
  std::vector<std::string> required;
};

const LayerKeys* layer_keys(const std::string& type) {
  static const std::map<std::string, LayerKeys> kKeys = {
      {"Dense", {{"units", "activation", "kernel_initializer", "use_bias"}, {"units"}}},
      {"Conv2D",
       {{"filters", "kernel_size", "strides", "padding", "activation", "kernel_initializer", "use_bias"},
        {"filters", "kernel_size"}}},
      {"MaxPool2D", {{"pool_size", "strides", "padding"}, {}}},
      {"MaxPooling2D", {{"pool_size", "strides", "padding"}, {}}},
      {"Flatten", {{}, {}}},
      {"Dropout", {{"rate"}, {"rate"}}},
      {"BatchNormalization", {{"momentum", "epsilon"}, {}}},
      {"Activation", {{"activation"}, {"activation"}}},
  };
  auto it = kKeys.find(type);
  return it == kKeys.end() ? nullptr : &it->second;
}

// "Dropout layers", "Conv2D and MaxPool2D layers": the layer types that take `key`, or nothing.
std::string layer_types_taking(const std::string& key) {
  std::vector<std::string> types;
  for (const char* type :
       {"Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "BatchNormalization", "Activation"})
    if (const auto& k = layer_keys(type)->keys; std::find(k.begin(), k.end(), key) != k.end())
      types.push_back(type);
  std::string out;
  for (size_t i = 0; i < types.size(); ++i)
    out += (i == 0 ? "" : i + 1 == types.size() ? " and " : ", ") + types[i];
  return out.empty() ? out : out + " layers";
}

// `where`: "FILE:LINE: model.layers", or "FILE (--set): model.layers" when --set gave the array.
bool read_layers(const toml::node& n, const std::string& where, const std::string& file,
                 const std::set<std::string>& overridden, std::vector<LayerSpec>& layers, std::string* error) {
  const toml::array* a = n.as_array();
  if (!a) {
    *error = where + " must be an array of tables";
    return false;
  }
  if (a->empty()) {
    *error = where + " is empty: add [[model.layers]] tables";
    return false;
  }
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::table* t = (*a)[i].as_table();
    const std::string element = "model.layers[" + std::to_string(i) + "]";
    // A table that --set gave has no line in the file.
    const uint32_t line = (*a)[i].source().begin.line;
    std::string at = file;
    if (line == 0) {
      at += " (--set)";
    } else {
      at += ':';
      at += std::to_string(line);
    }
    at += ": ";
    at += element;
    if (!t) {
      *error = at + " must be a table";
      return false;
    }
    LayerSpec s;
    TableReader r(*t, element + ".", file, overridden, error);
    r.get("type", s.type);
    r.get("name", s.name);
    if (!error->empty()) return false;
    if (s.type.empty()) {
      *error = at +
               ".type is missing (Dense, Conv2D, MaxPool2D, Flatten, Dropout, BatchNormalization or "
               "Activation)";
      return false;
    }
    const LayerKeys* keys = layer_keys(s.type);
    if (!keys) {
      *error = r.where(*t->get("type"), "type") + ": " +
               unknown_choice("layer type", s.type,
                              {"Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "BatchNormalization",
                               "Activation"});
      return false;
    }
    // Keras' names are Python identifiers; a '/' would also break the "layer/tensor" names of the
    // optimizer state in checkpoints. (A new run refuses '.', ':' and trainrr's own site words too:
    // check_new_run_layer_names.)
    if (s.name.find('/') != std::string::npos) {
      *error = r.where(*t->get("name"), "name") + " must not contain '/', got '" + inline_text(s.name) + "'";
      return false;
    }
    // A name is printed in the model's summary and in messages: one that would act on a terminal (an escape
    // sequence, a line break) or is not text is not a name.
    if (inline_text(s.name) != s.name) {
      *error = r.where(*t->get("name"), "name") +
               " must be text without control characters (a line break, an escape, a tab) or bytes that are "
               "not UTF-8, got '" +
               inline_text(s.name) + "'";
      return false;
    }
    auto wants = [&](const char* key) {
      return std::find(keys->keys.begin(), keys->keys.end(), key) != keys->keys.end();
    };
    if (wants("units")) r.get("units", s.units);
    if (wants("activation")) r.get("activation", s.activation);
    if (wants("filters")) r.get("filters", s.filters);
    if (wants("kernel_size")) r.get("kernel_size", s.kernel_size);
    if (wants("strides")) r.get("strides", s.strides, &s.strides_given);
    if (wants("pool_size")) r.get("pool_size", s.pool_size);
    if (wants("padding")) r.get("padding", s.padding);
    if (wants("rate")) r.get("rate", s.rate);
    if (wants("momentum")) r.get("momentum", s.momentum);
    if (wants("epsilon")) r.get("epsilon", s.epsilon);
    if (wants("kernel_initializer")) r.get("kernel_initializer", s.kernel_initializer);
    if (wants("use_bias")) r.get("use_bias", s.use_bias);
    if (!r.finish("a " + s.type + " layer", layer_types_taking)) return false;
    // Names the engine knows, checked here so that the message has the file and line.
    auto check = [&](const char* key, const Error* e) {
      if (!e || !r.has(key)) return true;
      *error = r.where(*t->get(key), key) + ": " + e->message;
      return false;
    };
    const auto activation = parse_activation(s.activation);
    const auto initializer = parse_initializer(s.kernel_initializer);
    const auto padding = parse_padding(s.padding);
    if (!check("activation", activation ? nullptr : &activation.error()) ||
        !check("kernel_initializer", initializer ? nullptr : &initializer.error()) ||
        !check("padding", padding ? nullptr : &padding.error()))
      return false;
    for (const std::string& key : keys->required)
      if (!r.has(key)) {
        *error = at + " (" + s.type + ") needs " + key;
        return false;
      }
    // Where each value came from: the model, which checks their ranges as it builds the layers, names it.
    // (Python's layers are checked against this parser before their own range checks.)
    for (const std::string& key : keys->keys)
      if (r.has(key)) s.sources[key] = r.where(*t->get(key), key);
    if (r.has("name")) s.sources["name"] = r.where(*t->get("name"), "name");
    layers.push_back(std::move(s));
  }
  return true;
}

std::string num(double v) { return setting_number(v); }

}  // namespace

Result<RunConfig> parse_config(const std::string& text, const std::string& name, const std::string& base_dir,
                               const std::vector<std::string>& overrides) {
  // A configuration is a page of TOML; one from a trace is untrusted, and the parser's work and memory grow
  // with its size. (Its nesting is bounded by the parser: 256 levels of arrays and inline tables.)
  if (text.size() > kMaxConfigBytes)
    return Error{name + ": the configuration is larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB (" +
                 std::to_string(text.size()) + " bytes)"};
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    return Error{name + ":" + std::to_string(e.source().begin.line) + ":" +
                 std::to_string(e.source().begin.column) + ": " + std::string(e.description())};
  }
  std::set<std::string> overridden;
  for (const auto& o : overrides)
    if (Status s = apply_override(root, o, overridden); !s) return s.error();

  RunConfig c;
  c.file = name;
  c.text = text;
  c.overrides = overrides;
  std::string error;
  TableReader top(root, "", name, overridden, &error);
  if (const toml::node* n = top.node("seed")) {
    if (!n->is_integer() || *n->value<int64_t>() < 0)
      return Error{top.where(*n, "seed") +
                   " must be an integer from 0 to 9223372036854775807 (omit it for an unseeded run)"};
    c.seed = static_cast<uint64_t>(*n->value<int64_t>());
  }
  bool source_given = false;
  if (const toml::table* t = top.table("data")) {
    TableReader r(*t, "data.", name, overridden, &error);
    DataConfig& d = c.data;
    source_given = r.has("source");
    r.get("source", d.source);
    r.get("path", d.path);
    if (!source_given)
      d.source = infer_source(d.path, r.has("shape") || r.has("classes") || r.has("samples"));
    r.get("reshape", d.reshape);
    r.get("test_fraction", d.test_fraction);
    r.get("stratify", d.stratify);
    r.get("split", d.split);
    r.get("scale", d.scale);
    if (d.source == "csv") {
      r.get("label", d.label);
    } else if (d.source == "npy" || d.source == "idx") {
      r.get("labels", d.labels);
    } else if (d.source == "synthetic") {
      r.get("shape", d.shape);
      r.get("classes", d.classes);
      r.get("samples", d.samples);
    }
    // An unknown source reads none of its keys: the source is the mistake, reported below, not its keys.
    if (d.source == "csv" || d.source == "npy" || d.source == "idx" || d.source == "synthetic")
      r.finish("data.source = \"" + d.source + "\"" +
               (source_given || d.path.empty() ? "" : " (from the name of data.path)"));
  }
  if (const toml::table* t = top.table("augment")) {
    TableReader r(*t, "augment.", name, overridden, &error);
    r.get("noise_stddev", c.augment.noise_stddev);
    r.get("flip", c.augment.flip);
    r.get("shift", c.augment.shift);
    r.finish();
  }
  if (const toml::table* t = top.table("model")) {
    TableReader r(*t, "model.", name, overridden, &error);
    if (const toml::node* n = r.node("layers"); n && error.empty())
      read_layers(*n, r.where(*n, "layers"), name, overridden, c.layers, &error);
    r.finish();
  }
  if (const toml::table* t = top.table("train")) {
    TableReader r(*t, "train.", name, overridden, &error);
    r.get("epochs", c.train.epochs);
    r.get("batch_size", c.train.batch_size);
    r.get("shuffle", c.train.shuffle);
    r.get("loss", c.train.loss);
    // Keras' long name of mse is the same loss: one name, so that the two are one run's configuration.
    if (c.train.loss == "mean_squared_error") c.train.loss = "mse";
    r.get("from_logits", c.train.from_logits);
    r.get("validation_split", c.train.validation_split);
    if (const toml::table* o = r.table("optimizer")) {
      OptimizerConfig& oc = c.train.optimizer;
      TableReader ro(*o, "train.optimizer.", name, overridden, &error);
      ro.get("type", oc.type);
      // Keras' default learning rates: 0.01 for SGD, 0.001 for the others.
      if (oc.type == "sgd") oc.learning_rate = 0.01;
      ro.get("learning_rate", oc.learning_rate);
      const bool known = oc.type == "sgd" || oc.type == "adam" || oc.type == "adamw" || oc.type == "rmsprop";
      // Each optimizer reads only the keys it uses: a momentum given to adam would otherwise do nothing.
      if (oc.type == "sgd" || oc.type == "rmsprop" || !known) ro.get("momentum", oc.momentum);
      if (oc.type == "sgd" || !known) ro.get("nesterov", oc.nesterov);
      if (oc.type == "adam" || oc.type == "adamw" || !known) {
        ro.get("beta_1", oc.beta_1);
        ro.get("beta_2", oc.beta_2);
      }
      if (oc.type != "sgd") ro.get("epsilon", oc.epsilon);
      if (oc.type == "adamw" || !known) ro.get("weight_decay", oc.weight_decay);
      if (oc.type == "rmsprop" || !known) {
        ro.get("rho", oc.rho);
        ro.get("centered", oc.centered);
      }
      // "the sgd and rmsprop optimizers": those that take `key`, or nothing.
      auto optimizers_taking = [](const std::string& key) {
        static const std::map<std::string, std::string> kWhose = {
            {"momentum", "the sgd and rmsprop optimizers"},
            {"nesterov", "the sgd optimizer"},
            {"beta_1", "the adam and adamw optimizers"},
            {"beta_2", "the adam and adamw optimizers"},
            {"epsilon", "the adam, adamw and rmsprop optimizers"},
            {"weight_decay", "the adamw optimizer"},
            {"rho", "the rmsprop optimizer"},
            {"centered", "the rmsprop optimizer"}};
        const auto it = kWhose.find(key);
        return it == kWhose.end() ? std::string() : it->second;
      };
      ro.finish(known ? "the " + oc.type + " optimizer" : "", optimizers_taking);
    }
    r.finish();
  }
  if (const toml::table* t = top.table("runtime")) {
    TableReader r(*t, "runtime.", name, overridden, &error);
    r.get("threads", c.runtime.threads);
    r.get("policy", c.runtime.policy);
    r.get("device", c.runtime.device);
    r.get("tf32", c.runtime.tf32);
    r.finish();
  }
  if (const toml::table* t = top.table("distributed")) {
    TableReader r(*t, "distributed.", name, overridden, &error);
    r.get("shards", c.distributed.shards);
    r.get("allreduce", c.distributed.allreduce);
    r.finish();
  }
  top.finish();
  if (!error.empty()) return Error{error};

  // Values: each check names the key and, where the file gave it, the line.
  auto line_of = [&](const std::string& path) -> std::string {
    // The key itself, or a key inside a table or an array --set gave (--set 'train={epochs=0}').
    for (const std::string& k : overridden)
      if (path.rfind(k, 0) == 0 &&
          (path.size() == k.size() || path[k.size()] == '.' || path[k.size()] == '['))
        return name + " (--set): " + path;
    toml::node_view<toml::node> v = root.at_path(path);
    if (!v) return name + ": " + path;
    // A node --set made has no line in the file.
    if (v.node()->source().begin.line == 0) return name + " (--set): " + path;
    return name + ":" + std::to_string(v.node()->source().begin.line) + ": " + path;
  };
  auto bad = [&](const std::string& path, const std::string& what) { return Error{line_of(path) + " " + what}; };
  // "FILE:LINE: KEY: MESSAGE", for messages that name the value themselves (unknown_choice).
  auto named = [&](const std::string& path, const std::string& what) { return Error{line_of(path) + ": " + what}; };

  DataConfig& d = c.data;
  if (d.source != "csv" && d.source != "npy" && d.source != "idx" && d.source != "synthetic")
    return named("data.source", unknown_choice("data source", d.source, {"csv", "npy", "idx", "synthetic"}));
  if (d.source == "synthetic") {
    if (!d.path.empty())
      return bad("data.path", "does not apply to synthetic data (data.source = \"synthetic\")");
    if (d.shape.empty()) return bad("data.shape", "is needed for synthetic data, e.g. shape = [784]");
    if (d.classes < 2) return bad("data.classes", "must be at least 2 for synthetic data");
    if (d.samples < 1) return bad("data.samples", "must be at least 1 for synthetic data");
    // Checked before anything is generated: a trace's configuration alone sizes this data.
    const std::string limit = std::to_string(kMaxSyntheticValues) + " (1 GiB of float32)";
    int64_t features = 1;
    for (int64_t dim : d.shape)
      if (__builtin_mul_overflow(features, dim, &features) || features > kMaxSyntheticValues)
        return bad("data.shape",
                   "holds more values per sample than synthetic data may hold in all, " + limit);
    if (int64_t values; __builtin_mul_overflow(d.samples, features, &values) || values > kMaxSyntheticValues)
      return bad("data.samples", "times the sample shape is too many values for synthetic data: " +
                                     std::to_string(d.samples) + " x " + std::to_string(features) +
                                     ", where it may hold at most " + limit);
    if (int64_t means;
        __builtin_mul_overflow(int64_t{d.classes}, features, &means) || means > kMaxSyntheticValues)
      return bad("data.classes",
                 "times the sample shape is too many values for synthetic data's class means: " +
                     std::to_string(d.classes) + " x " + std::to_string(features) +
                     ", where they may hold at most " + limit);
  } else {
    if (d.path.empty())
      return Error{name +
                   ": data.path is missing (the data file; or data.source = \"synthetic\" with shape, "
                   "classes and samples)"};
    if (fs::path(d.path).extension() == ".npz")
      return bad("data.path",
                 "is an .npz archive, which trainrr does not read: save the features and the "
                 "labels each with numpy.save (.npy) and give them as data.path and data.labels");
    if (d.source == "csv" && d.label.empty())
      return root.at_path("data.label") ? bad("data.label", "is empty: give the label column's name")
                                        : Error{name + ": data.label is missing (the label column's name)"};
    if (d.source != "csv" && d.labels.empty()) return Error{name + ": data.labels is missing (the labels file)"};
  }
  // A relative path given with --set resolves as the file's own do: the message of a file not found says so.
  for (const auto& file :
       {std::pair<std::string, std::string>{"data.path", d.path}, {"data.labels", d.labels}}) {
    const std::string& key = file.first;
    if (!file.second.empty() && !fs::path(file.second).is_absolute() && !base_dir.empty() &&
        std::any_of(overridden.begin(), overridden.end(),
                    [&key](const std::string& k) { return key == k || key.rfind(k + ".", 0) == 0; }))
      d.set_relative_to = base_dir;
  }
  d.path = resolve(base_dir, d.path);
  d.labels = resolve(base_dir, d.labels);
  if (d.test_fraction < 0 || d.test_fraction >= 1)
    return bad("data.test_fraction", "must be in [0, 1), got " + num(d.test_fraction));
  if (!parse_split_method(d.split))
    return named("data.split", unknown_choice("split", d.split, {"philox", "sklearn"}));
  // An unseeded run draws a seed numpy takes (Trainer), as scikit-learn's random_state=None would.
  if (d.split == "sklearn" && d.test_fraction > 0 && c.seed)
    if (const std::string problem = sklearn_seed_problem(c.seed); !problem.empty())
      return bad("data.split", problem);
  if (d.scale != "none" && d.scale != "standardize" && d.scale != "minmax")
    return named("data.scale", unknown_choice("scaling", d.scale, {"none", "standardize", "minmax"}));
  if (c.augment.noise_stddev < 0)
    return bad("augment.noise_stddev", "must not be negative, got " + num(c.augment.noise_stddev));
  if (c.augment.shift < 0)
    return bad("augment.shift", "must not be negative, got " + std::to_string(c.augment.shift));
  if (c.layers.empty()) return Error{name + ": model.layers is missing: add [[model.layers]] tables"};

  TrainConfig& t = c.train;
  if (t.epochs < 1) return bad("train.epochs", "must be at least 1, got " + std::to_string(t.epochs));
  if (t.batch_size < 1) return bad("train.batch_size", "must be at least 1, got " + std::to_string(t.batch_size));
  if (t.loss.empty()) return Error{name + ": train.loss is missing"};
  if (auto loss = make_loss(t.loss, false, false); !loss) return Error{line_of("train.loss") + ": " + loss.error().message};
  if (t.validation_split < 0 || t.validation_split >= 1)
    return bad("train.validation_split", "must be in [0, 1), got " + num(t.validation_split));
  const OptimizerConfig& o = t.optimizer;
  if (o.type != "sgd" && o.type != "adam" && o.type != "adamw" && o.type != "rmsprop")
    return named("train.optimizer.type", unknown_choice("optimizer", o.type, {"sgd", "adam", "adamw", "rmsprop"}));
  if (!(o.learning_rate > 0))
    return bad("train.optimizer.learning_rate", "must be positive, got " + num(o.learning_rate));
  if (o.momentum < 0 || o.momentum >= 1)
    return bad("train.optimizer.momentum", "must be in [0, 1), got " + num(o.momentum));
  if (o.epsilon <= 0) return bad("train.optimizer.epsilon", "must be positive, got " + num(o.epsilon));
  if (o.beta_1 < 0 || o.beta_1 >= 1)
    return bad("train.optimizer.beta_1", "must be in [0, 1), got " + num(o.beta_1));
  if (o.beta_2 < 0 || o.beta_2 >= 1)
    return bad("train.optimizer.beta_2", "must be in [0, 1), got " + num(o.beta_2));
  if (o.rho < 0 || o.rho >= 1) return bad("train.optimizer.rho", "must be in [0, 1), got " + num(o.rho));
  if (o.weight_decay < 0)
    return bad("train.optimizer.weight_decay", "must not be negative, got " + num(o.weight_decay));
  if (c.runtime.threads < 0)
    return bad("runtime.threads", "must be 0 (all cores) or more, got " + std::to_string(c.runtime.threads));
  if (c.runtime.threads > kMaxThreads)
    return bad("runtime.threads", "must be at most " + std::to_string(kMaxThreads) + ", got " +
                                      std::to_string(c.runtime.threads));
  if (c.distributed.shards < 0)
    return bad("distributed.shards", "must be 0 (one per rank) or more, got " + std::to_string(c.distributed.shards));
  if (const std::string& v = c.distributed.allreduce;
      v != "auto" && v != "trainrr_tree" && v != "trainrr_exact" && v != "mpi" && v != "arrival")
    return named("distributed.allreduce",
                 unknown_choice("allreduce", v, {"auto", "trainrr_tree", "trainrr_exact", "mpi", "arrival"}));
  const std::string& p = c.runtime.policy;
  if (p != "default" && p != "deterministic" && p != "autotune" && p != "portable")
    return named("runtime.policy", unknown_choice("policy", p, {"default", "deterministic", "autotune", "portable"}));
  if (auto device = parse_device(c.runtime.device); !device) return named("runtime.device", device.error().message);

  // Settings in range that float32, in which the run uses them, makes useless: a run to be trained refuses
  // them (new_run_problem); one recorded with them replays as it ran.
  const std::string rounds =
      " float32, in which the run uses it, rounds it to 0 (its smallest positive value is "
      "1.4e-45)";
  if (o.learning_rate > 0 && static_cast<float>(o.learning_rate) == 0)
    c.float32_problems.push_back(line_of("train.optimizer.learning_rate") + " is too small:" + rounds +
                                 ": the run would train nothing");
  if (o.type != "sgd" && o.epsilon > 0 && static_cast<float>(o.epsilon) == 0)
    c.float32_problems.push_back(line_of("train.optimizer.epsilon") + " is too small:" + rounds +
                                 ": the update would divide 0 by 0 where a gradient is 0");
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerSpec& l = c.layers[i];
    auto at = [&](const std::string& key) {
      auto it = l.sources.find(key);
      return it != l.sources.end() ? it->second : name + ": model.layers[" + std::to_string(i) + "]." + key;
    };
    if (l.type == "BatchNormalization" && l.epsilon > 0 && static_cast<float>(l.epsilon) == 0)
      c.float32_problems.push_back(at("epsilon") + " is too small:" + rounds +
                                   ": a channel of one value would divide 0 by 0");
    if (l.type == "Dropout" && l.rate < 1 && static_cast<float>(l.rate) >= 1)
      c.float32_problems.push_back(at("rate") + " is " + num(l.rate) +
                                   ", which float32, in which the layer draws, rounds to 1: every unit would "
                                   "be dropped at every step");
  }
  return c;
}

std::vector<std::pair<std::string, std::string>> flatten_config(const RunConfig& c) {
  std::vector<std::pair<std::string, std::string>> out;
  auto shape = [](const Shape& s) { return shape_str(s); };
  auto pair = [](const std::array<int64_t, 2>& a) { return std::to_string(a[0]) + "x" + std::to_string(a[1]); };
  out.emplace_back("seed", c.seed ? std::to_string(*c.seed) : "(none)");
  out.emplace_back("data.source", c.data.source);
  out.emplace_back("data.path", c.data.path);
  out.emplace_back("data.labels", c.data.labels);
  out.emplace_back("data.label", c.data.label);
  out.emplace_back("data.reshape", shape(c.data.reshape));
  out.emplace_back("data.test_fraction", num(c.data.test_fraction));
  out.emplace_back("data.stratify", c.data.stratify ? "true" : "false");
  out.emplace_back("data.split", c.data.split);
  out.emplace_back("data.scale", c.data.scale);
  out.emplace_back("data.shape", shape(c.data.shape));
  out.emplace_back("data.classes", std::to_string(c.data.classes));
  out.emplace_back("data.samples", std::to_string(c.data.samples));
  out.emplace_back("augment.noise_stddev", num(c.augment.noise_stddev));
  out.emplace_back("augment.flip", c.augment.flip ? "true" : "false");
  out.emplace_back("augment.shift", std::to_string(c.augment.shift));
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerSpec& l = c.layers[i];
    const std::string p = "model.layers[" + std::to_string(i) + "].";
    // MaxPooling2D is Keras' other name of MaxPool2D: the same layer.
    out.emplace_back(p + "type", l.type == "MaxPooling2D" ? "MaxPool2D" : l.type);
    out.emplace_back(p + "name", l.name);
    // Only the keys its type takes: a Dense layer has no filters to compare.
    const LayerKeys* keys = layer_keys(l.type);
    auto takes = [&](const char* key) {
      return keys && std::find(keys->keys.begin(), keys->keys.end(), key) != keys->keys.end();
    };
    if (takes("units")) out.emplace_back(p + "units", std::to_string(l.units));
    if (takes("activation")) out.emplace_back(p + "activation", l.activation);
    if (takes("filters")) out.emplace_back(p + "filters", std::to_string(l.filters));
    if (takes("kernel_size")) out.emplace_back(p + "kernel_size", pair(l.kernel_size));
    // A pooling layer's strides default to its pool size: the strides it runs with are compared.
    const bool pooling = takes("pool_size");
    if (takes("strides"))
      out.emplace_back(p + "strides", pair(pooling && !l.strides_given ? l.pool_size : l.strides));
    if (takes("pool_size")) out.emplace_back(p + "pool_size", pair(l.pool_size));
    if (takes("padding")) out.emplace_back(p + "padding", l.padding);
    if (takes("rate")) out.emplace_back(p + "rate", num(l.rate));
    if (takes("momentum")) out.emplace_back(p + "momentum", num(l.momentum));
    if (takes("epsilon")) out.emplace_back(p + "epsilon", num(l.epsilon));
    if (takes("kernel_initializer")) out.emplace_back(p + "kernel_initializer", l.kernel_initializer);
    if (takes("use_bias")) out.emplace_back(p + "use_bias", l.use_bias ? "true" : "false");
  }
  out.emplace_back("model.layers", std::to_string(c.layers.size()));
  const TrainConfig& t = c.train;
  out.emplace_back("train.epochs", std::to_string(t.epochs));
  out.emplace_back("train.batch_size", std::to_string(t.batch_size));
  out.emplace_back("train.shuffle", t.shuffle ? "true" : "false");
  out.emplace_back("train.loss", t.loss);
  out.emplace_back("train.from_logits", t.from_logits ? "true" : "false");
  out.emplace_back("train.validation_split", num(t.validation_split));
  const OptimizerConfig& o = t.optimizer;
  out.emplace_back("train.optimizer.type", o.type);
  out.emplace_back("train.optimizer.learning_rate", num(o.learning_rate));
  // Only the keys its type takes, as the reader asks for them.
  const bool sgd = o.type == "sgd", adam = o.type == "adam" || o.type == "adamw",
             rmsprop = o.type == "rmsprop";
  if (sgd || rmsprop) out.emplace_back("train.optimizer.momentum", num(o.momentum));
  if (sgd) out.emplace_back("train.optimizer.nesterov", o.nesterov ? "true" : "false");
  if (adam) out.emplace_back("train.optimizer.beta_1", num(o.beta_1));
  if (adam) out.emplace_back("train.optimizer.beta_2", num(o.beta_2));
  if (!sgd) out.emplace_back("train.optimizer.epsilon", num(o.epsilon));
  if (o.type == "adamw") out.emplace_back("train.optimizer.weight_decay", num(o.weight_decay));
  if (rmsprop) out.emplace_back("train.optimizer.rho", num(o.rho));
  if (rmsprop) out.emplace_back("train.optimizer.centered", o.centered ? "true" : "false");
  out.emplace_back("runtime.threads", std::to_string(c.runtime.threads));
  out.emplace_back("runtime.policy", c.runtime.policy);
  out.emplace_back("runtime.device", c.runtime.device);
  out.emplace_back("runtime.tf32", c.runtime.tf32 ? "true" : "false");
  out.emplace_back("distributed.shards", std::to_string(c.distributed.shards));
  out.emplace_back("distributed.allreduce", c.distributed.allreduce);
  return out;
}

Result<RunConfig> load_config(const std::string& path, const std::vector<std::string>& overrides) {
  // A folder or a device would read as an empty configuration, and be reported as missing its keys.
  // A named pipe holds a real configuration (trainrr train <(generate-config)); it is read.
  std::error_code ec;
  if (const char* kind = special_file_kind(path); kind && !fs::is_fifo(path, ec))
    return Error{path + ": not a regular file (it is " + kind + "); the configuration is a TOML file"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path + ": cannot open the configuration: " + std::strerror(errno)};
  // At most one byte past the limit is read, so a pipe that never ends is refused rather than read forever.
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return Error{path + ": the configuration is empty"};
  // Relative data paths resolve against the configuration's folder. One read from a pipe or through /dev
  // or /proc (/dev/stdin, /dev/fd/63) has none: /dev is not where its data lies, and a replay could not
  // resolve them again. Its data paths must be absolute.
  const fs::path absolute = fs::absolute(fs::path(path)).lexically_normal();
  const std::string where = absolute.string();
  const bool no_folder = fs::is_fifo(path, ec) || where.starts_with("/dev/") || where.starts_with("/proc/");
  if (!no_folder) return parse_config(text, path, absolute.parent_path().string(), overrides);
  auto config = parse_config(text, path, "", overrides);
  if (!config) return config;
  using Key = std::pair<std::string, std::string>;
  for (const auto& [key, value] :
       {Key{"data.path", config->data.path}, Key{"data.labels", config->data.labels}})
    if (!value.empty() && fs::path(value).is_relative())
      return Error{
          path + ": " + key + " = \"" + value +
          "\" is a relative path, but a configuration read from a pipe or standard input has no folder to "
          "resolve it against: give an absolute path (in the configuration, or --set " +
          key + "=/absolute/path), or give the configuration as a file"};
  return config;
}

Status check_new_run_layer_names(const RunConfig& config) {
  for (size_t i = 0; i < config.layers.size(); ++i) {
    const LayerSpec& s = config.layers[i];
    if (s.name.empty()) continue;
    const auto source = s.sources.find("name");
    const std::string at = source != s.sources.end()
                               ? source->second
                               : (config.file.empty() ? std::string() : config.file + ": ") +
                                     "model.layers[" + std::to_string(i) + "].name";
    if (s.name.find_first_of("/.:") != std::string::npos)
      return Error{at +
                   " must not contain '/', '.' or ':' (a trace names a layer's ops and tensors NAME/op:out "
                   "and NAME.kernel), got '" +
                   inline_text(s.name) + "'"};
    for (const char* own : {"data", "augment", "dropout", "init", "loss", "allreduce"})
      if (s.name == own)
        return Error{
            at + " = '" + s.name +
            "' is a word trainrr's own sites begin with (data, augment, dropout, init, loss, allreduce): "
            "choose another name"};
  }
  return {};
}

}  // namespace trainrr
