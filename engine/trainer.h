#pragma once
// A training run built from a configuration: data, split, scaling, model, optimizer, and the loop of
// fit / evaluate / predict (Keras' shape). Every source of variation goes through the hooks.

#include <atomic>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/collective.h"
#include "engine/config.h"
#include "engine/data/dataset.h"
#include "engine/data/split.h"
#include "engine/device_backend.h"
#include "engine/hooks.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/layers/loss.h"
#include "engine/loader.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/random.h"
#include "engine/thread_pool.h"

namespace trainrr {

struct TrainingOptions {
  Hooks* hooks = nullptr;                    // null: nobody listens
  const KernelRegistry* registry = nullptr;  // required
  std::optional<Policy> policy;              // overrides runtime.policy (the replayer forces)
  FILE* log = nullptr;                       // per-epoch lines and the progress bar; null: quiet
  FILE* warnings = nullptr;  // settings that most likely do not train as meant, a loss gone non-finite
  bool progress = false;                     // a progress bar (when the log is a terminal)
  const std::atomic<bool>* interrupt = nullptr;  // set (by a signal handler): stop after the current step
  // Where set, the ranks of a data-parallel run agree on the step they stop at: every `agree_every` steps,
  // `agree(mine)` returns whether any rank was interrupted (each rank calls it at the same steps, so all stop
  // together and none waits for the others in an allreduce).
  std::function<bool(bool)> agree;
  int64_t agree_every = 16;
  // A data-parallel run: this process is one rank of it (engine/collective.h). Null: a run of its own.
  Collective* collective = nullptr;
  // The device to train on instead of the one runtime.device names (tests: the emulated device,
  // engine/emulated_device.h). It must outlive the Training. Null: runtime.device decides.
  DeviceBackend* device = nullptr;
  // Values the model's parameters may take in all (Runtime::param_budget); -1: any number.
  int64_t param_budget = -1;
  // A run of its own (train, record, fit): its layer names are checked (check_new_run_layer_names). A replay
  // re-runs a recorded run with its names as they were.
  bool new_run = true;
};

struct Evaluation {
  double loss = 0;
  double accuracy = 0;  // for classification losses
  int64_t rows = 0;
};

class Training {
 public:
  static Result<std::unique_ptr<Training>> create(const RunConfig& config, const TrainingOptions& options);
  ~Training();

  // Trains until step `stop_at` (exclusive; -1: to the end). Errors: a kernel that cannot be selected.
  Status fit(int64_t stop_at = -1);
  bool finished() const { return step_ >= total_steps(); }

  Evaluation evaluate(const Dataset& data);
  Tensor predict(const Tensor& x);

  const Dataset& train_data() const { return train_; }
  const Dataset& validation_data() const { return val_; }
  const Dataset& test_data() const { return test_; }
  bool has_test() const { return test_.rows() > 0; }

  uint64_t seed() const { return seed_; }
  bool seed_from_entropy() const { return seed_from_entropy_; }
  int threads() const { return pool_->threads(); }
  Isa isa() const { return isa_; }
  Policy policy() const { return selector_->policy(); }
  // The device the run trains on; null on the CPU.
  DeviceBackend* device() const { return device_; }
  int64_t step() const { return step_; }
  int64_t steps_per_epoch() const;
  int64_t total_steps() const { return steps_per_epoch() * config_.train.epochs; }
  const RunConfig& config() const { return config_; }
  // The name and shape of every tensor a checkpoint of this run may hold (state(), restore()): the model's
  // parameters and layer state, and each parameter's optimizer slots.
  std::map<std::string, Shape> state_shapes();
  // In a run on a device, the model's tensors keep their values there: their host copies (`data`) are current
  // only as weights() and state() leave them, or during a step_end whose hooks read the step's tensors.
  Sequential& model() { return model_; }
  const std::vector<EpochSummary>& history() const { return history_; }

  // The model's parameters and state tensors, as host copies (read back from a device first).
  std::vector<NamedTensor> weights();
  // The state at the current step boundary, and back.
  TrainState state();
  Status restore(const TrainState& state);

 private:
  Training() = default;
  Status prepare(const TrainingOptions& options);
  // Refuses a model whose tensors for one batch take more memory than this process can have.
  Status check_step_memory(int64_t rows, const Shape& sample) const;
  // What restore() takes from a checkpoint's scalars, each checked (an error names the scalar and the step).
  struct CheckpointScalars {
    int64_t iterations = 0;
    double loss_sum = 0;
    int64_t correct = 0;
    int64_t rows = 0;
  };
  Status checkpoint_scalars(const TrainState& state, CheckpointScalars& out) const;
  void start_epoch();
  void run_step();
  // A data-parallel step: this rank's shards of the global batch, the allreduce, the update.
  LossValue run_shards(const Batch& b, int64_t batch, std::vector<Param*>& params, Tensor& pred_all,
                       std::vector<float>& y_all);
  void end_epoch();
  bool classification() const;
  // A rank of a data-parallel run that a signal has reached: it writes no progress or epoch line. Ctrl-C
  // reaches mpirun (the ranks have process groups of their own), which stops reading the ranks' output as it
  // ends the job, so a write could block the rank, before its trace is finished, until mpirun kills it.
  bool interrupted_rank() const { return comm_ && interrupt_ && interrupt_->load(); }

  RunConfig config_;
  // Declared before every tensor it may hold memory for, so that it goes last.
  std::unique_ptr<DeviceBackend> owned_device_;
  DeviceBackend* device_ = nullptr;  // null on the CPU
  Hooks* hooks_ = nullptr;
  FILE* log_ = nullptr;
  FILE* warn_ = nullptr;
  bool warned_non_finite_ = false;
  const std::atomic<bool>* interrupt_ = nullptr;
  std::function<bool(bool)> agree_;
  int64_t agree_every_ = 16;
  bool progress_ = false;
  uint64_t seed_ = 0;
  bool seed_from_entropy_ = false;
  Isa isa_ = Isa::generic;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<KernelSelector> selector_;
  std::unique_ptr<RngStreams> rng_;
  Runtime rt_;
  Dataset train_, val_, test_;
  Sequential model_;
  std::unique_ptr<Loss> loss_;
  std::unique_ptr<Optimizer> optimizer_;

  // Loop state: all of it goes into TrainState.
  int64_t step_ = 0;
  int epoch_ = 0;
  std::vector<uint32_t> order_;         // this epoch's row order
  std::vector<uint32_t> batches_done_;  // this epoch's batches handed out
  bool epoch_open_ = false;
  // Running means of the epoch, as Keras reports them.
  double epoch_loss_ = 0;
  int64_t epoch_correct_ = 0, epoch_rows_ = 0;
  std::vector<EpochSummary> history_;
  struct LoaderHolder;
  std::unique_ptr<LoaderHolder> loader_;
  // Data-parallel runs.
  Collective* comm_ = nullptr;
  int shards_ = 1;
  std::vector<Bucket> buckets_;
};

// Loads the configured data set (before any split). A data.reshape that does not fit is the configuration's
// error, said with `config_file` (when there is one); a data file's names the file.
Result<Dataset> load_dataset(const DataConfig& config, uint64_t seed, const std::string& config_file = "");
// What a run trains, validates and tests on, from its loaded data: the split's rows (`split`; null where
// data.test_fraction is 0, and every row trains), then the validation rows (Keras: the last fraction of the
// training rows, before any shuffling), then the scaling, fit on the training rows.
struct PreparedData {
  Dataset train, val, test;
};
Result<PreparedData> prepare_rows(const RunConfig& config, Dataset data, const SplitIndices* split);
// The rows a run of `config` trains on, from the `data_rows` of its data set: those data.test_fraction's
// split leaves, less the last train.validation_split of them (as Training takes them). nullopt where
// data.split names no split method.
std::optional<int64_t> training_rows(const RunConfig& config, int64_t data_rows);
// Labels the loss (sparse_categorical_crossentropy: class indices; binary_crossentropy: [0, 1]) and a
// stratified split (class indices, two rows per class) can use; errors name the file and the row.
Status check_labels(const Dataset& data, const RunConfig& config, const std::string& loss);
// Image augmentation needs samples [height, width, channels] and a shift smaller than the image.
Status check_augment(const AugmentConfig& augment, const Shape& sample);
// The output activation against the loss's from_logits, as Keras warns (and a softmax over one value).
std::vector<std::string> output_warnings(const RunConfig& config, const Shape& output);
// Whether the model's output (per sample) comes straight from a softmax over its one axis: every row a
// distribution, which the loss may take as one.
bool ends_in_softmax(const std::vector<LayerSpec>& layers, const Shape& output);

}  // namespace trainrr
