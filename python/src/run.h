#pragma once
// One training run from Python: a configuration (a TOML file, or text the Python API wrote), trained as
// `trainrr train` or, with a recording, as `trainrr record` trains it: the same calls in the same order, so
// that a Python run and a CLI run of one configuration write the same trace.

#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "python/src/py_stream.h"
#include "recorder/recorder.h"

namespace trainrr::py {

struct RecordSettings {
  std::string path;
  std::string level = "step";  // step | layer | op
  int64_t checkpoint_every = 0;
  bool embed_data = false;
};

// Where the configuration comes from: a file (as `trainrr record FILE`) or text with the folder its relative
// paths resolve against.
struct ConfigSource {
  std::string file;
  std::string text, name, base_dir;
  std::vector<std::string> overrides;
};

Result<RunConfig> read_config(const ConfigSource& source);

class Run {
 public:
  // Builds the run (data, model, optimizer) and, with `record`, starts its trace. `log`: a Python stream for
  // the epoch lines (None: quiet); `progress`: a progress bar on it.
  Run(const ConfigSource& source, std::optional<RecordSettings> record, pybind11::object log, bool progress,
      pybind11::object warnings);
  ~Run();

  // Trains to the end. With `catch_sigint`, Ctrl-C stops the run after the step in progress. Returns
  // "completed" or why it stopped ("interrupted at step N"); the trace, if any, is finished either way.
  std::string fit(bool catch_sigint);
  bool interrupted() const { return interrupted_.load(); }

  Evaluation evaluate(Dataset data);
  Evaluation evaluate_test();
  Tensor predict(Tensor x);

  Training& training() { return *training_; }
  const RunConfig& config() const { return config_; }
  Shape output_shape() const { return output_shape_; }
  uint64_t trace_bytes() const { return recorder_ ? recorder_->bytes_written() : 0; }

 private:
  RunConfig config_;
  KernelRegistry registry_;
  OwnedFile log_, warnings_;
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<Training> training_;
  std::atomic<bool> interrupted_{false};
  Shape output_shape_;
  bool fitted_ = false;
  int64_t checkpoint_every_ = 0;
};

}  // namespace trainrr::py
