#pragma once
// A run's configuration: a TOML file whose keys follow Keras' names. The trace stores the file verbatim
// together with the --set overrides, which is all a replay needs to rebuild the run.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/layers/layers.h"
#include "engine/result.h"
#include "engine/tensor.h"

namespace trainrr {

struct DataConfig {
  std::string source = "csv";  // csv | npy | idx | synthetic (inferred from the path's extension)
  std::string path;            // features (csv: features and labels); resolved against the config's folder
  std::string labels;          // npy, idx: the labels file
  std::string label;           // csv: the label column
  Shape reshape;               // sample shape to give the features, e.g. [8, 8, 1]
  double test_fraction = 0;    // held-out test split, in [0, 1)
  bool stratify = false;
  std::string split = "philox";  // philox | sklearn (scikit-learn's train_test_split rows for the seed)
  std::string scale = "none";  // none | standardize | minmax, fitted on the training split
  // synthetic
  Shape shape;
  int classes = 0;
  int64_t samples = 0;
  // Not a key: whether a reader's errors may repeat the data files' text (column names, cells). A replay
  // reads a data file that differs from the recorded one with false: a trace named it, so it may hold
  // anything, and its contents are not shown.
  bool quote_text = true;
  // Not a key: the configuration's folder, where --set gave data.path or data.labels as a relative path
  // (resolved against it, as the file's own paths are), for the message of a file not found there.
  std::string set_relative_to;
};

struct AugmentConfig {
  double noise_stddev = 0;  // gaussian noise added to each training batch
  bool flip = false;        // random horizontal flip (images)
  int64_t shift = 0;        // random shift of up to this many pixels (images)
};

struct OptimizerConfig {
  std::string type = "adam";  // sgd | adam | adamw | rmsprop
  double learning_rate = 0.001;
  double momentum = 0;  // sgd, rmsprop
  bool nesterov = false;
  double beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7;  // adam, adamw; epsilon also rmsprop
  double weight_decay = 0.004;                          // adamw
  double rho = 0.9;                                     // rmsprop
  bool centered = false;                                // rmsprop
};

struct TrainConfig {
  int epochs = 1;
  int64_t batch_size = 32;
  bool shuffle = true;
  std::string loss;  // binary_crossentropy | sparse_categorical_crossentropy | mse
  bool from_logits = false;
  double validation_split = 0;  // the last fraction of the training rows, evaluated each epoch
  OptimizerConfig optimizer;
};

struct RuntimeConfig {
  int threads = 0;                 // 0: every core; at most kMaxThreads
  std::string policy = "default";  // default | deterministic | autotune | portable
  std::string device = "cpu";      // cpu | cuda | cuda:N (engine/device.h)
  bool tf32 = false;               // on a GPU: matmuls in TF32 (cuBLASLt's FAST_TF32) rather than float32
};

// Data-parallel runs (mpirun -n N trainrr ...): train.batch_size is the global batch.
struct DistributedConfig {
  int shards = 0;  // micro-batch shards per global batch; 0: one per rank. A multiple of the rank count.
  // The gradient allreduce: auto (the policy's: mpi by default, trainrr_tree when deterministic) |
  // trainrr_tree | trainrr_exact | mpi | arrival.
  std::string allreduce = "auto";
};

struct RunConfig {
  std::optional<uint64_t> seed;  // none: drawn from the OS and recorded
  DataConfig data;
  AugmentConfig augment;
  std::vector<LayerSpec> layers;
  TrainConfig train;
  RuntimeConfig runtime;
  DistributedConfig distributed;

  std::string file;                    // where it was read from ("" for text)
  std::string text;                    // the file's text, verbatim
  std::vector<std::string> overrides;  // "key=value", applied in order
  // Settings in range that float32 makes useless (a learning rate it rounds to 0, a dropout rate it rounds to
  // 1), each with where it was given: new_run_problem.
  std::vector<std::string> float32_problems;
};

// Why a run of `config` is not to be trained (a setting float32 makes useless), with the file and line; ""
// for none. A recording made with one replays as it ran: only a new run refuses it.
std::string new_run_problem(const RunConfig& config);

// The effective values of a configuration as flat "key" -> "value" pairs (e.g. "train.epochs" -> "10",
// "model.layers[0].units" -> "16"), for comparing two runs' configurations key by key.
std::vector<std::pair<std::string, std::string>> flatten_config(const RunConfig& config);

// Every key of a fixed table, and where it belongs as a --set names it: "epochs" -> "train.epochs",
// "optimizer" -> "train.optimizer". An unknown key that is one of these, given in another table, is told
// where it belongs. A layer's keys, which depend on its type, are not among them.
const std::map<std::string, std::string>& fixed_table_keys();

// The largest configuration text read or parsed: real ones are a few KiB.
inline constexpr size_t kMaxConfigBytes = size_t{1} << 20;

// The most threads runtime.threads may ask for: more than machines have cores. A configuration, a trace's
// included, cannot make a run start more (its data loader starts two workers per thread besides).
inline constexpr int kMaxThreads = 1024;

// The most float32 values synthetic data may hold (1 GiB), in its samples and in its classes' means: as much
// as the largest data file a trace may embed.
inline constexpr int64_t kMaxSyntheticValues = int64_t{1} << 28;

// Reads and checks a configuration. Errors name the file, the line and the key.
Result<RunConfig> load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from text; relative paths resolve against `base_dir`, `name` is used in messages.
Result<RunConfig> parse_config(const std::string& text, const std::string& name, const std::string& base_dir,
                               const std::vector<std::string>& overrides = {});

// A new run's layer names: a trace names a layer's ops and tensors from its name ("dense_1/matmul.fwd:out",
// "dense_1.kernel", "m/dense_1.kernel") beside trainrr's own sites ("init/dense_1.kernel", "dropout/...",
// "data/loader", "loss/mean"), and a name with '.' or ':' in it, or one of those first words, would be read
// back as another layer or op, and a report would name the wrong one. Checked where a run starts (train,
// record, Python's fit), not where a replay reads a trace recorded before: that run's names are as they were.
Status check_new_run_layer_names(const RunConfig& config);

}  // namespace trainrr
