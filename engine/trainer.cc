#include "engine/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <new>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "engine/choice.h"
#include "engine/data/augment.h"
#include "engine/data/csv.h"
#include "engine/data/idx.h"
#include "engine/data/npy.h"
#include "engine/data/scaler.h"
#include "engine/data/split.h"
#include "engine/data/synthetic.h"
#include "engine/device.h"
#include "engine/escape.h"
#include "engine/fingerprint.h"
#include "engine/loader.h"
#include "engine/memory.h"

namespace trainrr {

struct Training::LoaderHolder {
  std::unique_ptr<Loader> loader;
  bool first_ready = false;
  bool epoch_started = false;  // the loader has this epoch's order
};

Training::~Training() = default;

namespace {

// The data loader's workers could not start (std::system_error from std::thread): fit() returns it as an
// error, as create() does when the pool's threads cannot start.
struct LoaderThreadsUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Keras: the training part of `rows` that a validation_split leaves is floor(rows * (1 - validation_split)).
int64_t rows_before_validation(int64_t rows, double validation_split) {
  return static_cast<int64_t>(std::floor(static_cast<double>(rows) * (1.0 - validation_split)));
}

}  // namespace

std::optional<int64_t> training_rows(const RunConfig& config, int64_t data_rows) {
  int64_t n = data_rows;
  if (config.data.test_fraction > 0) {
    const std::optional<SplitMethod> method = parse_split_method(config.data.split);
    if (!method) return std::nullopt;
    n -= test_rows(n, config.data.test_fraction, *method);
  }
  if (config.train.validation_split > 0) n = rows_before_validation(n, config.train.validation_split);
  return n;
}

Result<Dataset> load_dataset(const DataConfig& c, uint64_t seed, const std::string& config_file) {
  Result<Dataset> data = Error{""};
  if (c.source == "csv") {
    data = read_csv(c.path, c.label, c.quote_text);
  } else if (c.source == "npy") {
    auto x = read_npy(c.path);
    if (!x) return x.error();
    auto y = read_npy(c.labels);
    if (!y) return y.error();
    if (x->rank() < 2) return Error{c.path + ": features need a rows dimension and at least one more, got shape " + shape_str(x->shape)};
    if (y->size() != x->dim(0))
      return Error{c.labels + ": " + std::to_string(y->size()) + " labels for " + std::to_string(x->dim(0)) + " rows in " + c.path};
    Dataset d;
    d.x = std::move(x).value();
    d.y = y->data;
    d.num_classes = infer_num_classes(d.y);
    data = std::move(d);
  } else if (c.source == "idx") {
    data = read_idx_dataset(c.path, c.labels);
  } else {
    data = synthetic_dataset(c.shape, c.classes, c.samples, seed);
  }
  if (!data) {
    std::error_code ec;
    if (!c.set_relative_to.empty() && (!std::filesystem::exists(c.path, ec) ||
                                       (!c.labels.empty() && !std::filesystem::exists(c.labels, ec))))
      return Error{data.error().message +
                   " (a relative path given with --set resolves against the "
                   "configuration's folder, " +
                   c.set_relative_to + ", as the file's own paths do)"};
    return data;
  }
  if (data->rows() == 0) return Error{(c.path.empty() ? "data" : c.path) + ": the data set is empty"};
  // A NaN or an infinity (a missing value, say) would surface only as a NaN loss, steps later. (The CSV
  // reader reports its own with line and column.)
  const int64_t per_row = data->x.size() / data->rows();
  for (int64_t i = 0; i < data->x.size(); ++i)
    if (!std::isfinite(data->x[i]))
      return Error{c.path + ": row " + std::to_string(i / per_row) + " holds " + std::to_string(data->x[i]) +
                   (std::isnan(data->x[i]) ? " (a missing value? fill or drop such rows first)" : "")};
  for (size_t i = 0; i < data->y.size(); ++i)
    if (!std::isfinite(data->y[i]))
      return Error{(c.labels.empty() ? c.path : c.labels) + ": the label of row " + std::to_string(i) +
                   " is " + std::to_string(data->y[i])};
  if (!c.reshape.empty()) {
    Shape s = c.reshape;
    int64_t values = 1;
    for (int64_t d : s)
      if (__builtin_mul_overflow(values, d, &values))
        return Error{(config_file.empty() ? "" : config_file + ": ") + "data.reshape " +
                     shape_str(c.reshape) +
                     " holds more values than a sample can (over 2^63), where each sample of " + c.path +
                     " has " + std::to_string(shape_size(data->sample_shape()))};
    if (shape_size(s) != shape_size(data->sample_shape()))
      return Error{(config_file.empty() ? "" : config_file + ": ") + "data.reshape " + shape_str(c.reshape) +
                   " holds " + std::to_string(shape_size(s)) + " values but each sample of " + c.path +
                   " has " + std::to_string(shape_size(data->sample_shape()))};
    s.insert(s.begin(), data->rows());
    data->x = data->x.reshaped(s);
  }
  return data;
}

namespace {

// A label as the float32 it is, in the fewest digits that read back as it: 0.9999999, never a rounded 1.
std::string fmt_number(float v) {
  char buf[48];
  const auto end = std::to_chars(buf, buf + sizeof buf, std::isnan(v) ? std::fabs(v) : v).ptr;
  return std::string(buf, end);
}

// Where a row's label comes from, for messages: rows count from 0, as numpy, dump's split lists and export's
// permutation count them; a CSV row also by its line in the file (from 1, the header its first).
std::string label_at(const DataConfig& c, const Dataset& data, size_t row) {
  if (c.source == "csv")
    return c.path + ": the label (column \"" + c.label + "\") of data row " + std::to_string(row) +
           " (counting from 0; line " + std::to_string(data.line_of(static_cast<int64_t>(row))) +
           " of the file)";
  return (c.labels.empty() ? std::string("the synthetic data") : c.labels) + ": the label of row " +
         std::to_string(row) + " (counting from 0)";
}

}  // namespace

// Labels that the loss or the split cannot use would otherwise stop the run with an internal error in the
// middle of training (a class index out of range), or train silently to nonsense (a negative loss).
Result<PreparedData> prepare_rows(const RunConfig& config, Dataset data, const SplitIndices* split) {
  PreparedData out;
  if (split) {
    // A hook may have replaced the split (replay): every row must exist in this data set.
    for (const auto* part : {&split->train, &split->test})
      for (uint32_t row : *part)
        if (row >= data.rows())
          return Error{"the split names row " + std::to_string(row) + " but the data has " +
                       std::to_string(data.rows()) + " rows"};
    out.train = take_rows(data, split->train);
    out.test = take_rows(data, split->test);
  } else {
    out.train = std::move(data);
  }
  if (config.train.validation_split > 0) {
    // Keras: the last fraction of the training rows, before any shuffling; the training part is
    // floor(rows * (1 - validation_split)), and neither part may be empty.
    const int64_t n = out.train.rows();
    const int64_t n_keep = rows_before_validation(n, config.train.validation_split);
    if (n_keep == 0 || n_keep == n)
      return Error{config.file + ": train.validation_split = " + fmt_number(config.train.validation_split) +
                   " of " + std::to_string(n) + " training rows leaves " +
                   (n_keep == 0 ? "no training rows" : "no validation rows")};
    const int64_t n_val = n - n_keep;
    std::vector<uint32_t> keep(n - n_val), val(n_val);
    std::iota(keep.begin(), keep.end(), 0);
    std::iota(val.begin(), val.end(), static_cast<uint32_t>(n - n_val));
    out.val = take_rows(out.train, val);
    out.train = take_rows(out.train, keep);
  }
  if (out.train.rows() == 0) {
    const std::string data = config.data.path.empty() ? std::string("the synthetic data") : config.data.path;
    const int64_t rows = out.test.rows();  // the split gave them all to the test set
    if (split && config.data.test_fraction > 0)
      return Error{config.file + ": data.test_fraction = " + setting_number(config.data.test_fraction) +
                   " of the " + std::to_string(rows) + " row" + (rows == 1 ? "" : "s") + " of " + data +
                   " leaves no training rows"};
    return Error{data + ": no training rows left after the splits"};
  }
  if (config.data.scale != "none") {
    const Scaler scaler = Scaler::fit(
        config.data.scale == "standardize" ? ScaleKind::standardize : ScaleKind::minmax, out.train.x);
    scaler.apply(out.train.x);
    if (out.val.rows()) scaler.apply(out.val.x);
    if (out.test.rows()) scaler.apply(out.test.x);
  }
  return out;
}

Status check_labels(const Dataset& data, const RunConfig& config, const std::string& loss) {
  const DataConfig& c = config.data;
  for (size_t i = 0; i < data.y.size(); ++i) {
    const float v = data.y[i];
    const bool index = v >= 0 && v < 16777216.0f && std::floor(v) == v;
    // From 2^24 on, float32 holds every other integer, then fewer: the label read is the file's rounded.
    if (loss == "sparse_categorical_crossentropy" && !index && v >= 16777216.0f && std::isfinite(v))
      return Error{label_at(c, data, i) + " is " + fmt_number(v) +
                   " as float32, too large for a class index: sparse_categorical_crossentropy needs class "
                   "indices, integers from 0 below the model's outputs (and below 16777216)"};
    if (loss == "sparse_categorical_crossentropy" && !index)
      return Error{label_at(c, data, i) + " is " + fmt_number(v) +
                   ": sparse_categorical_crossentropy needs class indices, integers from 0"};
    if (loss == "binary_crossentropy" && !(v >= 0 && v <= 1))
      return Error{label_at(c, data, i) + " is " + fmt_number(v) +
                   ": binary_crossentropy needs labels in [0, 1]"};
    if (c.stratify && c.test_fraction > 0 && !index)
      return Error{label_at(c, data, i) + " is " + fmt_number(v) +
                   ": data.stratify needs class labels, integers from 0 (set stratify = false for "
                   "regression targets)"};
  }
  if (!c.stratify || c.test_fraction <= 0) return {};
  // As scikit-learn's stratified split: every class needs two rows, and each side one row per class.
  std::map<int64_t, int64_t> counts;
  for (float v : data.y) ++counts[static_cast<int64_t>(v)];
  for (const auto& [label, count] : counts)
    if (count < 2)
      return Error{
          label_at(c, data,
                   std::find(data.y.begin(), data.y.end(), static_cast<float>(label)) - data.y.begin()) +
          " is " + std::to_string(label) +
          ", the only row of that class: data.stratify needs at least 2 rows in every class "
          "(set stratify = false, or drop the class)"};
  const auto rows = static_cast<int64_t>(data.y.size());
  const int64_t n_test =
      test_rows(rows, c.test_fraction, parse_split_method(c.split).value_or(SplitMethod::philox));
  const auto classes = static_cast<int64_t>(counts.size());
  if (n_test < classes || rows - n_test < classes)
    return Error{config.file + ": data.stratify: a split of " + std::to_string(rows) + " rows into " +
                 std::to_string(rows - n_test) + " training and " + std::to_string(n_test) +
                 " test rows cannot hold each of the " + std::to_string(classes) +
                 " classes on both sides (a larger or smaller data.test_fraction, or stratify = false)"};
  return {};
}

// Flips and shifts move pixels: they need images, [height, width, channels] per sample.
Status check_augment(const AugmentConfig& a, const Shape& sample) {
  if (!a.flip && a.shift == 0) return {};
  const std::string key = a.flip ? "augment.flip" : "augment.shift";
  if (sample.size() != 3)
    return Error{key +
                 " needs images, samples of shape [height, width, channels] (data.reshape = [8, 8, 1], "
                 "say), but this data's samples have shape " +
                 shape_str(sample)};
  if (a.shift >= std::min(sample[0], sample[1]))
    return Error{"augment.shift = " + std::to_string(a.shift) + " must be less than the images' height and " +
                 "width (" + std::to_string(sample[0]) + "x" + std::to_string(sample[1]) +
                 "): a larger shift leaves nothing of the image"};
  return {};
}

// Settings that train but most likely not as meant: what Keras warns about, and a softmax over one value.
std::vector<std::string> output_warnings(const RunConfig& config, const Shape& output) {
  std::vector<std::string> out;
  const std::string& loss = config.train.loss;
  // The activation that produces the model's output: the last layer that has one.
  std::string act;
  for (auto it = config.layers.rbegin(); it != config.layers.rend() && act.empty(); ++it)
    if (it->type == "Dense" || it->type == "Conv2D" || it->type == "Activation") act = it->activation;
  if (act.empty()) act = "linear";
  if (act == "softmax" && shape_size(output) == 1) {
    out.push_back(
        "the model ends in a softmax over 1 value, which is always 1: use sigmoid for a binary "
        "output, or linear for a regression");
    return out;
  }
  if (loss != "binary_crossentropy" && loss != "sparse_categorical_crossentropy") return out;
  const bool probabilities = act == "softmax" || act == "sigmoid";
  if (config.train.from_logits && probabilities)
    out.push_back(loss + " with train.from_logits = true, but the model's output comes from a " + act +
                  " activation: its outputs are probabilities, not logits (set from_logits = false)");
  else if (!config.train.from_logits && act != "sigmoid" && act != "softmax")
    // Only a linear output is logits: a relu's are held at 0 or above, a tanh's within [-1, 1].
    out.push_back(loss +
                  " with train.from_logits = false takes the outputs as probabilities, but the model's "
                  "last activation is " +
                  act + (act == "linear" ? " (set from_logits = true, or end in " : " (end in ") +
                  (loss == "binary_crossentropy" ? "sigmoid" : "softmax") +
                  (act == "linear" ? ")" : ", or in a linear output with from_logits = true)"));
  return out;
}

bool ends_in_softmax(const std::vector<LayerSpec>& layers, const Shape& output) {
  // Only the last layer counts: a Dropout after the softmax, say, leaves rows that do not sum to 1.
  if (layers.empty() || output.size() != 1) return false;
  const LayerSpec& last = layers.back();
  return (last.type == "Dense" || last.type == "Activation") && last.activation == "softmax";
}

bool Training::classification() const { return loss_->name() != "mse"; }

int64_t Training::steps_per_epoch() const {
  const int64_t rows = train_.rows(), batch = config_.train.batch_size;
  return rows / batch + (rows % batch != 0);  // ceil, without overflow for a huge batch size
}

Result<std::unique_ptr<Training>> Training::create(const RunConfig& config, const TrainingOptions& options) {
  std::unique_ptr<Training> t(new Training());
  t->config_ = config;
  if (Status s = t->prepare(options); !s) return s.error();
  return t;
}

Status Training::check_step_memory(int64_t rows, const Shape& sample) const {
  // The batch one forward pass takes (a data-parallel run's shards split the global batch, and a rank runs
  // its shards one after another), at most the rows.
  const int64_t batch = std::min<int64_t>(rows, config_.train.batch_size / std::max(1, shards_));
  if (batch <= 0) return {};
  // What a step holds at once, at the least: the batch of inputs, each layer's output (kept for backward),
  // the gradient backward returns below each layer that wants one, and each parameter with its gradient.
  // Workspaces of kernels (im2col's, say) come besides.
  int64_t values = 0, largest = 0;
  size_t largest_at = 0;
  bool overflow = false;
  auto add = [&](int64_t first, const Shape& shape) {
    int64_t n = first;
    for (int64_t d : shape) overflow = overflow || d < 0 || __builtin_mul_overflow(n, d, &n);
    overflow = overflow || __builtin_add_overflow(values, n, &values);
    return overflow ? 0 : n;
  };
  add(batch, sample);
  const std::vector<Shape>& outs = model_.output_shapes();
  const auto& layers = model_.layers();
  for (size_t i = 0; i < outs.size() && i < layers.size(); ++i) {
    if (const int64_t n = add(batch, outs[i]); n > largest) largest = n, largest_at = i;
    if (layers[i]->needs_input_grad()) add(batch, i == 0 ? sample : outs[i - 1]);
    for (Param* p : layers[i]->params()) add(2, p->value.shape);
  }
  const uint64_t bytes = overflow ? UINT64_MAX : static_cast<uint64_t>(values) * sizeof(float);
  const std::optional<FreeMemory> free = free_memory();
  if (!free || bytes <= free->bytes) return {};
  return Error{
      (config_.file.empty() ? "" : config_.file + ": ") + "the model's tensors for a batch of " +
          std::to_string(batch) + " take " +
          (overflow ? "more than 2^63 bytes" : "at least " + human_bytes(bytes)) +
          (overflow || layers.empty()
               ? ""
               : " (the largest, " + layers[largest_at]->name() + "'s output: " + std::to_string(batch) +
                     " samples of shape " + shape_str(outs[largest_at]) + ")") +
          ", and this process can have " + human_bytes(free->bytes) + " (" + free->source +
          "): a smaller train.batch_size, data shape or model takes less",
      true};
}

Status Training::prepare(const TrainingOptions& options) {
  TRAINRR_CHECK(options.registry != nullptr, "a run needs a kernel registry");
  if (options.new_run)
    if (Status s = check_new_run_layer_names(config_); !s) return s;
  hooks_ = options.hooks ? options.hooks : &null_hooks();
  log_ = options.log;
  warn_ = options.warnings;
  progress_ = options.progress;
  interrupt_ = options.interrupt;
  agree_ = options.agree;
  agree_every_ = std::max<int64_t>(1, options.agree_every);

  // A run on a GPU needs the CUDA backend and a device; the engine says so before anything is built.
  auto device = parse_device(config_.runtime.device);
  if (!device) return Error{"runtime.device: " + device.error().message};
  if (options.device) {
    device_ = options.device;
  } else if (!device->is_cpu()) {
    auto opened = open_device(*device);
    if (!opened) return Error{"runtime.device = \"" + config_.runtime.device + "\": " + opened.error().message};
    owned_device_ = std::move(opened).value();
    device_ = owned_device_.get();
  }
  if (device_)
    if (Status s = device_->supports(config_.runtime.policy == "portable" ? MathFamily::portable : MathFamily::libm); !s)
      return Error{config_.file + ": runtime.device = \"" + config_.runtime.device + "\" with runtime.policy = \"" +
                   config_.runtime.policy + "\": " + s.error().message};
  if (device_ && options.collective)
    return Error{config_.file + ": runtime.device = \"" + config_.runtime.device +
                 "\": a data-parallel run (mpirun) trains on the CPU only"};
  auto isa = runtime_isa();
  if (!isa) return isa.error();
  isa_ = *isa;
  Policy policy = options.policy ? *options.policy : parse_policy(config_.runtime.policy).value();
  const int threads = config_.runtime.threads > 0 ? config_.runtime.threads : ThreadPool::hardware_threads();
  try {
    pool_ = std::make_unique<ThreadPool>(threads);
  } catch (const std::system_error& e) {
    return Error{config_.file + ": runtime.threads: cannot start " + std::to_string(threads) +
                 " threads here (" + e.what() + ")"};
  }
  selector_ = std::make_unique<KernelSelector>(*options.registry, policy, isa_, *pool_, *hooks_);

  comm_ = options.collective;
  if (comm_) {
    const int ranks = comm_->size();
    shards_ = config_.distributed.shards > 0 ? config_.distributed.shards : ranks;
    if (shards_ % ranks != 0)
      return Error{config_.file + ": distributed.shards = " + std::to_string(shards_) + " is not a multiple of the " +
                   std::to_string(ranks) + " ranks (mpirun -n " + std::to_string(ranks) + ")"};
    if (config_.train.batch_size % shards_ != 0)
      return Error{config_.file + ": train.batch_size = " + std::to_string(config_.train.batch_size) +
                   " (the global batch) does not divide into " + std::to_string(shards_) + " equal shards" +
                   (config_.distributed.shards > 0 ? " (distributed.shards)"
                                                   : " (one per rank: mpirun -n " + std::to_string(ranks) + ")")};
    for (const LayerSpec& l : config_.layers)
      if (l.type == "BatchNormalization")
        return Error{config_.file + ": BatchNormalization in a data-parallel run: its moving statistics would "
                     "differ from rank to rank (trainrr has no synchronized batch normalization)"};
  }

  hooks_->run_begin();
  seed_from_entropy_ = !config_.seed.has_value();
  seed_ = config_.seed ? *config_.seed : entropy_seed();
  // Every rank trains from rank 0's seed: an unseeded run draws it once.
  if (comm_ && !config_.seed) seed_ = comm_->broadcast(seed_);
  // scikit-learn's split takes its seed as numpy's RandomState does, from 0 to 2^32 - 1: an unseeded run
  // draws one of those, as random_state=None draws from the OS, and records it like any other seed.
  if (!config_.seed && config_.data.split == "sklearn" && config_.data.test_fraction > 0) seed_ &= 0xFFFFFFFFu;
  hooks_->seed(seed_, seed_from_entropy_);
  rng_ = std::make_unique<RngStreams>(seed_, *hooks_);
  rt_.hooks = hooks_;
  rt_.kernels = selector_.get();
  rt_.rng = rng_.get();
  rt_.math = config_.runtime.policy == "portable" ? MathFamily::portable : MathFamily::libm;
  rng_->set_math(rt_.math);
  rt_.level = hooks_->probe_level();
  rt_.param_budget = options.param_budget;

  auto data = load_dataset(config_.data, seed_, config_.file);
  if (!data) return data.error();
  // The model is built (its initializers drawn) before the data is split, as a Keras user defines the
  // model before fit: the initializer draws come first in every trace.
  auto model = Sequential::from_specs(config_.layers);
  if (!model) return model.error();
  model_ = std::move(model).value();
  auto out = model_.build(data->sample_shape(), rt_, !config_.data.reshape.empty());
  if (!out) return Error{(config_.file.empty() ? "" : config_.file + ": ") + out.error().message};
  const Shape sample_shape = data->sample_shape();
  // On a device the parameters, drawn on the host, are copied there; from now on the layers, the loss and the
  // optimizer keep their values there.
  if (device_) {
    try {
      model_.to_device(*device_);
    } catch (const DeviceError& e) {
      return Error{"runtime.device = \"" + config_.runtime.device + "\": " + e.what()};
    }
    rt_.device = device_;
  }
  rt_.tf32 = config_.runtime.tf32;
  if (config_.runtime.tf32 && !device_ && warn_)
    std::fprintf(warn_, "warning: runtime.tf32 = true has no effect on the CPU, which computes in float32: it "
                        "selects TF32 matmuls on a GPU\n");
  auto loss = make_loss(config_.train.loss, config_.train.from_logits, ends_in_softmax(config_.layers, *out));
  if (!loss) return Error{config_.file + ": train.loss: " + loss.error().message};
  loss_ = std::move(loss).value();
  if (Status s = check_labels(*data, config_, loss_->name()); !s) return s.error();
  // The configuration's file leads: the loss, the layers or the augmentation settings are what to change.
  if (Status s = loss_->check_output(*out, data->num_classes); !s) {
    // Synthetic data has the classes data.classes asks for, whatever labels its few samples drew.
    if (config_.data.source == "synthetic")
      return Error{
          config_.file + ": train.loss = " + config_.train.loss + ": the model outputs " + shape_str(*out) +
          " per sample, and data.classes = " + std::to_string(config_.data.classes) + " asks for " +
          std::to_string(config_.data.classes) + " classes (" +
          (loss_->name() == "binary_crossentropy"
               ? "binary_crossentropy needs 2: use sparse_categorical_crossentropy, or data.classes = 2)"
               : "one score per class: give the last layer " + std::to_string(config_.data.classes) +
                     " units)")};
    // Labels counted from 1 need one score more than they have classes.
    const bool no_zero =
        data->num_classes > 0 && std::find(data->y.begin(), data->y.end(), 0.0f) == data->y.end();
    return Error{config_.file + ": train.loss = " + config_.train.loss + ": " + s.error().message +
                 (no_zero ? " (no label is 0: if the labels count from 1, subtract 1 from them)" : "")};
  }
  if (Status s = check_augment(config_.augment, data->sample_shape()); !s)
    return Error{config_.file + ": " + s.error().message};
  if (warn_)
    for (const std::string& w : output_warnings(config_, *out))
      std::fprintf(warn_, "warning: %s\n", w.c_str());

  if (config_.data.test_fraction > 0) {
    const std::optional<SplitMethod> method = parse_split_method(config_.data.split);
    if (!method)
      return Error{config_.file + ": data.split must be philox or sklearn, got '" + config_.data.split + "'"};
    // load_config checks this for a configuration file; a RunConfig built in code may skip it.
    if (*method == SplitMethod::sklearn)
      if (const std::string problem = sklearn_seed_problem(rng_->seed()); !problem.empty())
        return Error{config_.file + ": data.split " + problem};
    SplitIndices split = split_rows(data->y, data->num_classes, config_.data.test_fraction,
                                    config_.data.stratify, *method, *rng_, *hooks_);
    auto prepared = prepare_rows(config_, std::move(data).value(), &split);
    if (!prepared) return prepared.error();
    train_ = std::move(prepared->train), val_ = std::move(prepared->val), test_ = std::move(prepared->test);
  } else {
    auto prepared = prepare_rows(config_, std::move(data).value(), nullptr);
    if (!prepared) return prepared.error();
    train_ = std::move(prepared->train), val_ = std::move(prepared->val), test_ = std::move(prepared->test);
  }
  // Every layer keeps its output of a batch: a model whose tensors for a batch of the training rows take more
  // memory than this process can have is refused now, not killed (or stopped by a failed allocation) after
  // its first minutes.
  if (!device_)
    if (Status s = check_step_memory(train_.rows(), sample_shape); !s) return s.error();

  optimizer_ = make_optimizer(config_.train.optimizer);
  loader_ = std::make_unique<LoaderHolder>();
  if (comm_) {
    std::vector<std::pair<std::string, int64_t>> sizes;
    for (Param* p : model_.params()) sizes.emplace_back(p->name, p->value.size());
    buckets_ = bucket_layout(sizes, kBucketBytes);
    if (config_.distributed.allreduce != "auto")
      selector_->prefer("grad/allreduce", "allreduce__" + config_.distributed.allreduce,
                        "configured: distributed.allreduce = " + config_.distributed.allreduce);
  }
  return {};
}

void Training::start_epoch() {
  const uint32_t n = static_cast<uint32_t>(train_.rows());
  if (config_.train.shuffle) {
    RngDraw draw = rng_->permutation("data/shuffle", "data/shuffle", order_, n);
    hooks_->shuffle("data/shuffle", epoch_, order_, &draw);
  } else {
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0u);
    hooks_->shuffle("data/shuffle", epoch_, order_, nullptr);
  }
  TRAINRR_CHECK(order_.size() == n, "a shuffle hook must keep every row");
  batches_done_.clear();
  epoch_open_ = true;
  epoch_loss_ = 0;
  epoch_correct_ = epoch_rows_ = 0;
}

void Training::run_step() {
  if (!loader_->loader) {
    const Kernel& k = selector_->select("data/loader", OpKind::loader, static_cast<double>(train_.rows()));
    loader_->first_ready = k.info.id == "loader__first_ready";
    // Two prefetch workers per thread, as data loaders are usually given more workers than cores.
    const int workers = 2 * pool_->threads();
    try {
      loader_->loader =
          std::make_unique<Loader>(train_, config_.train.batch_size, loader_->first_ready, workers);
    } catch (const std::system_error& e) {
      throw LoaderThreadsUnavailable(config_.file + ": runtime.threads: the data loader cannot start its " +
                                     std::to_string(workers) +
                                     " worker threads (two per thread of the run's " +
                                     std::to_string(pool_->threads()) + ") here (" + e.what() + ")");
    }
  }
  Loader& loader = *loader_->loader;
  if (!loader_->epoch_started) {
    loader.start(order_, batches_done_);
    loader_->epoch_started = true;
  }
  int64_t batch = loader.propose();
  // Every rank takes the same global batch: rank 0's loader decides (its first-ready pick, say).
  if (comm_) batch = static_cast<int64_t>(comm_->broadcast(static_cast<uint64_t>(batch)));
  hooks_->step_begin(step_, epoch_, batch);
  hooks_->batch_order(step_, batch);
  if (!loader.can_take(batch)) {
    // A forced batch this epoch cannot hand out (a replay with another batch size, say): the loader's own
    // proposal runs, and the hooks hear why.
    const int64_t asked = batch;
    batch = loader.propose();
    hooks_->batch_refused(step_, asked, batch,
                          "epoch " + std::to_string(epoch_ + 1) +
                              (asked >= 0 && asked < loader.batches()
                                   ? std::string(" handed it out already")
                                   : " has batches 0.." + std::to_string(loader.batches() - 1)));
  }
  Batch b = loader.take(batch);
  batches_done_.push_back(static_cast<uint32_t>(batch));

  std::vector<Param*> params = model_.params();
  Tensor pred;
  LossValue lv;
  if (comm_) {
    lv = run_shards(b, batch, params, pred, b.y);
  } else {
    if (config_.augment.flip) random_flip(b.x, *rng_);
    if (config_.augment.shift > 0) random_shift(b.x, config_.augment.shift, *rng_);
    if (config_.augment.noise_stddev > 0)
      gaussian_noise(b.x, static_cast<float>(config_.augment.noise_stddev), *rng_);
    if (device_) to_device(*device_, b.x);
    pred = model_.forward(b.x, rt_, true);
    lv = loss_->compute(pred, b.y, rt_);
    rt_.op_done("loss");  // the loss has no probe of its own (Runtime::op_done)
    model_.backward(lv.grad, rt_);
  }
  optimizer_->step(params, rt_);
  // The host reads the predictions (a classifier's accuracy) and, when the hooks read them, the step's
  // parameters and gradients (the hooks' summary).
  const bool summary_tensors = !device_ || hooks_->reads_step_tensors();
  if (device_) {
    if (classification()) to_host(*device_, pred);
    if (summary_tensors) model_.to_host(*device_, true);
  }

  if (!std::isfinite(lv.loss) && warn_ && !warned_non_finite_) {
    warned_non_finite_ = true;
    std::fprintf(warn_,
                 "warning: the loss is %s at step %lld (epoch %d): training has diverged, and every later "
                 "value will be too (a smaller learning rate or scaled data, data.scale, may help)\n",
                 std::isnan(lv.loss) ? "nan" : "infinite", static_cast<long long>(step_), epoch_ + 1);
    std::fflush(warn_);
  }
  const int64_t rows = static_cast<int64_t>(b.y.size());
  epoch_loss_ += lv.loss * rows;
  epoch_rows_ += rows;
  if (classification() && rows > 0) epoch_correct_ += count_correct(*loss_, config_.train.from_logits, pred, b.y);

  StepSummary s;
  s.step = step_;
  s.epoch = epoch_;
  s.batch = batch;
  s.loss = lv.loss;
  if (classification())
    s.metrics.emplace_back("accuracy", static_cast<double>(epoch_correct_) / static_cast<double>(std::max<int64_t>(1, epoch_rows_)));
  if (summary_tensors)
    for (Param* p : params) {
      s.params.emplace_back(p->name, &p->value);
      s.grads.emplace_back(p->name, &p->grad);
    }
  hooks_->step_end(s);
  ++step_;
}

namespace {

// Rows [begin, end) of a batch tensor.
Tensor row_slice(const Tensor& x, int64_t begin, int64_t end) {
  const int64_t per_row = x.shape[0] > 0 ? x.size() / x.shape[0] : 0;
  Shape s = x.shape;
  s[0] = end - begin;
  return Tensor(s, std::vector<float>(x.data.begin() + begin * per_row, x.data.begin() + end * per_row));
}

}  // namespace

LossValue Training::run_shards(const Batch& b, int64_t batch, std::vector<Param*>& params, Tensor& pred_all,
                               std::vector<float>& y_all) {
  const int ranks = comm_->size(), rank = comm_->rank();
  const int per_rank = shards_ / ranks, first = rank * per_rank;
  const int64_t rows = static_cast<int64_t>(b.y.size());
  const int64_t per_shard = (rows + shards_ - 1) / shards_;  // the last batch of an epoch may be short
  int64_t total = 0;
  for (Param* p : params) total += p->grad.size();

  // Each shard's gradients, flattened in model order (the bucket layout's order).
  std::vector<std::vector<float>> grads(per_rank, std::vector<float>(total));
  std::vector<uint64_t> shard_rows;
  double loss_sum = 0;
  int computed = 0;
  std::vector<float> y_mine;
  Tensor pred_mine;
  const int64_t batch_start = batch * config_.train.batch_size;
  for (int s = 0; s < per_rank; ++s) {
    const int k = first + s;
    const int64_t begin = std::min(rows, k * per_shard), end = std::min(rows, (k + 1) * per_shard);
    std::vector<uint32_t> taken;
    for (int64_t i = begin; i < end; ++i) taken.push_back(order_[batch_start + i]);
    shard_rows.push_back(digest(std::span<const uint32_t>(taken)));
    if (begin == end) continue;  // a short last batch leaves the last shards empty: zero gradients
    rng_->set_scope("#shard" + std::to_string(k));
    Tensor x = row_slice(b.x, begin, end);
    std::vector<float> y(b.y.begin() + begin, b.y.begin() + end);
    if (config_.augment.flip) random_flip(x, *rng_);
    if (config_.augment.shift > 0) random_shift(x, config_.augment.shift, *rng_);
    if (config_.augment.noise_stddev > 0) gaussian_noise(x, static_cast<float>(config_.augment.noise_stddev), *rng_);
    Tensor pred = model_.forward(x, rt_, true);
    LossValue lv = loss_->compute(pred, y, rt_);
    rt_.op_done("loss");
    model_.backward(lv.grad, rt_);
    rng_->set_scope("");
    loss_sum += lv.loss;
    ++computed;
    int64_t at = 0;
    for (Param* p : params) {
      std::copy(p->grad.data.begin(), p->grad.data.end(), grads[s].begin() + at);
      at += p->grad.size();
    }
    // The rank's own rows, for its accuracy.
    y_mine.insert(y_mine.end(), y.begin(), y.end());
    if (pred_mine.shape.empty()) {
      pred_mine = std::move(pred);
    } else {
      pred_mine.shape[0] += pred.shape[0];
      pred_mine.data.insert(pred_mine.data.end(), pred.data.begin(), pred.data.end());
    }
  }

  const Kernel& variant = selector_->select("grad/allreduce", OpKind::allreduce, static_cast<double>(total * 4));
  std::vector<float> sum(total);
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    const Bucket& bucket = buckets_[bi];
    std::vector<std::span<const float>> mine;
    std::vector<float> concatenated;
    CollectiveCall call;
    call.step = step_;
    call.bucket = static_cast<int>(bi);
    call.offset = bucket.offset;
    call.count = bucket.count;
    call.variant = variant.info.id;
    call.ranks = ranks;
    call.shards = shards_;
    call.first_shard = first;
    call.shard_rows = shard_rows;
    for (const auto& g : grads) {
      std::span<const float> part(g.data() + bucket.offset, static_cast<size_t>(bucket.count));
      mine.push_back(part);
      call.shard_digests.push_back(digest(part));
      concatenated.insert(concatenated.end(), part.begin(), part.end());
    }
    call.input_digest = digest(std::span<const float>(concatenated));
    const std::string site = "allreduce/bucket_" + std::to_string(bi);
    if (variant.info.id == kAllreduceArrival) hooks_->accumulation_order(site, call.order);
    std::span<float> out(sum.data() + bucket.offset, static_cast<size_t>(bucket.count));
    comm_->allreduce(variant.info.id, mine, out, call);
    if (variant.info.id == kAllreduceArrival) hooks_->accumulated(site, call.order);
    call.result_digest = digest(std::span<const float>(out));
    hooks_->collective(call);
  }
  // The mean over the shards, the same on every rank.
  const float k = static_cast<float>(shards_);
  int64_t at = 0;
  for (Param* p : params) {
    for (int64_t i = 0; i < p->grad.size(); ++i) p->grad.data[i] = sum[at + i] / k;
    at += p->grad.size();
  }
  pred_all = std::move(pred_mine);
  y_all = std::move(y_mine);
  LossValue out;
  out.loss = computed > 0 ? loss_sum / computed : 0;
  return out;
}

void Training::end_epoch() {
  loader_->epoch_started = false;
  epoch_open_ = false;
  EpochSummary e;
  e.epoch = epoch_;
  e.logs.emplace_back("loss", epoch_loss_ / std::max<int64_t>(1, epoch_rows_));
  if (classification())
    e.logs.emplace_back("accuracy", static_cast<double>(epoch_correct_) / std::max<int64_t>(1, epoch_rows_));
  if (val_.rows() > 0) {
    Evaluation v = evaluate(val_);
    e.logs.emplace_back("val_loss", v.loss);
    if (classification()) e.logs.emplace_back("val_accuracy", v.accuracy);
  }
  hooks_->epoch_end(e);
  if (log_ && !interrupted_rank()) {
    std::fprintf(log_, "Epoch %d/%d - %lld step%s", epoch_ + 1, config_.train.epochs,
                 static_cast<long long>(steps_per_epoch()), steps_per_epoch() == 1 ? "" : "s");
    for (const auto& [k, v] : e.logs) std::fprintf(log_, " - %s: %.4f", k.c_str(), shown_number(v));
    // A data-parallel rank sums the loss and accuracy over the rows of its own shards only.
    if (comm_ && comm_->size() > 1)
      std::fprintf(log_, " (loss%s: rank %d's shards of each batch, of %d ranks)",
                   classification() ? " and accuracy" : "", comm_->rank(), comm_->size());
    std::fprintf(log_, "\n");
    std::fflush(log_);
  }
  history_.push_back(std::move(e));
  ++epoch_;
}

Status Training::fit(int64_t stop_at) {
  const int64_t end = stop_at < 0 ? total_steps() : std::min(stop_at, total_steps());
  const int64_t per_epoch = steps_per_epoch();
  try {
    // The state before the first step (the initial weights), when the hooks keep checkpoints.
    if (step_ == 0 && end > 0 && hooks_->wants_checkpoint(0)) hooks_->checkpoint(state());
    while (step_ < end) {
      bool interrupted = interrupt_ && interrupt_->load();
      if (agree_) interrupted = step_ % agree_every_ == 0 && agree_(interrupted);
      if (interrupted) return Error{"interrupted at step " + std::to_string(step_)};
      if (Status h = hooks_->health(); !h) return Error{"stopped at step " + std::to_string(step_) + ": " + h.error().message};
      if (!epoch_open_) start_epoch();
      run_step();
      const int64_t in_epoch = static_cast<int64_t>(batches_done_.size());
      if (progress_ && log_ && !interrupted_rank()) {
        const int width = 30, filled = static_cast<int>(width * in_epoch / per_epoch);
        std::fprintf(log_, "\r%lld/%lld [%s%s] - loss: %.4f", static_cast<long long>(in_epoch),
                     static_cast<long long>(per_epoch), std::string(filled, '=').c_str(),
                     std::string(width - filled, '.').c_str(),
                     shown_number(epoch_loss_ / std::max<int64_t>(1, epoch_rows_)));
        if (in_epoch == per_epoch) std::fprintf(log_, "\r\033[K");
        std::fflush(log_);
      }
      if (in_epoch == per_epoch) end_epoch();
      if (hooks_->wants_checkpoint(step_)) hooks_->checkpoint(state());
    }
  } catch (const KernelUnavailable& e) {
    return Error{e.what()};
  } catch (const LoaderThreadsUnavailable& e) {
    return Error{"step " + std::to_string(step_) + ": " + e.what()};
  } catch (const DeviceError& e) {
    return Error{"step " + std::to_string(step_) + " on " + device_->describe() + ": " + e.what()};
  } catch (const std::bad_alloc&) {
    return Error{"out of memory at step " + std::to_string(step_) + ": the model's tensors for a batch of " +
                 std::to_string(config_.train.batch_size) +
                 " do not fit in this machine's memory (a smaller train.batch_size or model would)"};
  }
  return {};
}

Evaluation Training::evaluate(const Dataset& data) {
  Evaluation ev;
  ev.rows = data.rows();
  if (ev.rows == 0) return ev;
  // Evaluation is not part of any step: no probes.
  const ProbeLevel saved = rt_.level;
  rt_.level = ProbeLevel::step;
  std::vector<uint32_t> order(data.rows());
  std::iota(order.begin(), order.end(), 0u);
  Loader loader(data, config_.train.batch_size, false, 1);
  loader.start(std::move(order));
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t b = 0; b < loader.batches(); ++b) {
    Batch batch = loader.take(b);
    if (device_) to_device(*device_, batch.x);
    Tensor pred = model_.forward(batch.x, rt_, false);
    LossValue lv = loss_->compute(pred, batch.y, rt_);
    if (device_ && classification()) to_host(*device_, pred);
    loss_sum += lv.loss * static_cast<double>(batch.y.size());
    if (classification()) correct += count_correct(*loss_, config_.train.from_logits, pred, batch.y);
  }
  rt_.level = saved;
  ev.loss = loss_sum / static_cast<double>(ev.rows);
  ev.accuracy = static_cast<double>(correct) / static_cast<double>(ev.rows);
  return ev;
}

Tensor Training::predict(const Tensor& x) {
  const ProbeLevel saved = rt_.level;
  rt_.level = ProbeLevel::step;
  if (!device_) {
    Tensor out = model_.forward(x, rt_, false);
    rt_.level = saved;
    return out;
  }
  Tensor in(x.shape, x.data);
  to_device(*device_, in);
  Tensor out = model_.forward(in, rt_, false);
  to_host(*device_, out);
  rt_.level = saved;
  return Tensor(out.shape, std::move(out.data));
}

std::vector<NamedTensor> Training::weights() {
  if (device_) model_.to_host(*device_, false);
  return model_.tensors();
}

TrainState Training::state() {
  TrainState s;
  s.step = step_;
  s.epoch = epoch_;
  s.batch_in_epoch = epoch_open_ ? static_cast<int64_t>(batches_done_.size()) : 0;
  s.seed = seed_;
  if (device_) {
    model_.to_host(*device_, false);
    optimizer_->slots_to_host(*device_);
  }
  s.tensors = model_.tensors();
  for (auto& t : optimizer_->state()) s.tensors.push_back(std::move(t));
  s.rng_offsets = rng_->offsets();
  if (epoch_open_) {
    s.permutation = order_;
    s.batches_done = batches_done_;
  }
  s.scalars.emplace_back("optimizer.iterations", static_cast<double>(optimizer_->iterations()));
  s.scalars.emplace_back("epoch.loss_sum", epoch_loss_);
  s.scalars.emplace_back("epoch.correct", static_cast<double>(epoch_correct_));
  s.scalars.emplace_back("epoch.rows", static_cast<double>(epoch_rows_));
  return s;
}

std::map<std::string, Shape> Training::state_shapes() {
  std::map<std::string, Shape> out;
  for (const NamedTensor& t : model_.tensors()) out[t.name] = t.value.shape;
  for (Param* p : model_.params())
    for (const std::string& slot : optimizer_->slots()) out[slot + "/" + p->name] = p->value.shape;
  return out;
}

namespace {

// A checkpoint's scalar, for a message: as printf writes it, every digit a double holds.
std::string scalar_str(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", shown_number(v));
  return buf;
}

}  // namespace

// The scalars come from a trace, untrusted: each is checked before it is converted or used. A count must be a
// whole number no larger than what the checkpoint's own step and order allow: the optimizer updates once a
// step, and an epoch takes each row's labels once. The loss sum may be nan or infinite (a run whose loss
// diverged is checkpointed too), never negative: no loss is.
Status Training::checkpoint_scalars(const TrainState& s, CheckpointScalars& out) const {
  auto damaged = [&](const std::string& name, double v, const std::string& why) {
    return Error{"checkpoint at step " + std::to_string(s.step) + ": its scalar " + name + " = " +
                 scalar_str(v) + " " + why +
                 ": the checkpoint was changed after it was taken (it is damaged)"};
  };
  // `most` as a double is exact: it is at most 2^53.
  auto count = [&](const std::string& name, double v, int64_t most, const std::string& why_most,
                   int64_t& to) -> Status {
    // Compared as a double: a value past int64_t's range is never converted.
    if (!(v >= 0 && v <= static_cast<double>(most) && v == std::floor(v)))
      return damaged(name, v, "is not a whole number from 0 to " + std::to_string(most) + why_most);
    to = static_cast<int64_t>(v);
    return {};
  };
  // An open epoch's labels are those of the rows its permutation orders (their count is checked against the
  // run's in restore()). A closed epoch's counts are the epoch before's, not used, and its data may be
  // another now: whole numbers, and no larger than a double holds exactly.
  const bool open = !s.permutation.empty();
  const int64_t labels_per_row =
      train_.rows() > 0 ? std::max<int64_t>(1, static_cast<int64_t>(train_.y.size()) / train_.rows()) : 1;
  const int64_t labels =
      open ? static_cast<int64_t>(s.permutation.size()) * labels_per_row : int64_t{1} << 53;
  const std::string why_labels = open ? " (the labels of the rows its epoch's permutation orders)" : "";
  const double* correct = nullptr;
  for (const auto& [k, v] : s.scalars) {
    Status st;
    if (k == "optimizer.iterations")
      st = count(k, v, std::clamp<int64_t>(s.step, 0, int64_t{1} << 53), " (its step)", out.iterations);
    if (k == "epoch.rows") st = count(k, v, labels, why_labels, out.rows);
    if (k == "epoch.correct") correct = &v;
    if (k == "epoch.loss_sum") {
      if (v < 0) return damaged(k, v, "is negative, where no loss is");
      out.loss_sum = v;
    }
    if (!st) return st;
  }
  if (correct) return count("epoch.correct", *correct, out.rows, " (its epoch.rows)", out.correct);
  return {};
}

Status Training::restore(const TrainState& s) {
  // The run keeps its own seed: a replay that does not force the seed resumes with the recorded state but
  // draws from its own streams, which is what it is asked to show.
  CheckpointScalars scalars;
  if (Status st = checkpoint_scalars(s, scalars); !st) return st;
  std::vector<NamedTensor> model_tensors, opt_tensors;
  for (const auto& t : s.tensors) (t.name.find('/') == std::string::npos ? model_tensors : opt_tensors).push_back(t);
  if (Status st = model_.restore(model_tensors); !st) return st;
  // The optimizer updates each slot elementwise beside its parameter: it must have the parameter's shape.
  std::map<std::string, const Shape*> param_shapes;
  for (Param* p : model_.params()) param_shapes[p->name] = &p->value.shape;
  for (const auto& t : opt_tensors) {
    auto it = param_shapes.find(t.name.substr(t.name.find('/') + 1));
    if (it == param_shapes.end())
      return Error{"optimizer state '" + t.name + "' belongs to no parameter of the model"};
    if (t.value.shape != *it->second)
      return Error{"optimizer state '" + t.name + "' has shape " + shape_str(t.value.shape) +
                   ", its parameter " + shape_str(*it->second)};
  }
  if (Status st = optimizer_->restore(opt_tensors, scalars.iterations); !st) return st;
  epoch_loss_ = scalars.loss_sum;
  epoch_correct_ = scalars.correct;
  epoch_rows_ = scalars.rows;
  // The optimizer's slots go to the device at their next update.
  if (device_) model_.to_device(*device_);
  rng_->restore(s.rng_offsets);
  step_ = s.step;
  epoch_ = s.epoch;
  loader_->loader.reset();
  loader_->epoch_started = false;
  epoch_open_ = !s.permutation.empty();
  if (epoch_open_) {
    if (s.permutation.size() != static_cast<size_t>(train_.rows()))
      return Error{"checkpoint order has " + std::to_string(s.permutation.size()) + " rows, the run " +
                   std::to_string(train_.rows())};
    order_ = s.permutation;
    batches_done_ = s.batches_done;
    for (uint32_t b : batches_done_)
      if (b >= steps_per_epoch()) return Error{"checkpoint names batch " + std::to_string(b) + " beyond the epoch"};
  } else {
    epoch_loss_ = 0;
    epoch_correct_ = epoch_rows_ = 0;
  }
  return {};
}

}  // namespace trainrr
