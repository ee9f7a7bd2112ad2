#include "python/src/run.h"

#include <utility>

#include "python/src/errors.h"
#include "python/src/sigint.h"

namespace trainrr::py {
namespace {

namespace pyb = pybind11;

bool starts_with(const std::string& s, const std::string& prefix) {
  return !prefix.empty() && s.rfind(prefix, 0) == 0;
}

// The engine names the file its errors are about: the data files make an error a data error.
ErrorKind kind_of(const std::string& message, const DataConfig& data) {
  return starts_with(message, data.path) || starts_with(message, data.labels) ? ErrorKind::data
                                                                               : ErrorKind::config;
}

ProbeLevel parse_level(const std::string& level) {
  if (level == "step") return ProbeLevel::step;
  if (level == "layer") return ProbeLevel::layer;
  if (level == "op") return ProbeLevel::op;
  raise(ErrorKind::config, "level: must be 'step', 'layer' or 'op', got '" + level + "'");
}

}  // namespace

Result<RunConfig> read_config(const ConfigSource& source) {
  if (!source.file.empty()) return load_config(source.file, source.overrides);
  return parse_config(source.text, source.name, source.base_dir, source.overrides);
}

Run::Run(const ConfigSource& source, std::optional<RecordSettings> record, pyb::object log, bool progress,
         pyb::object warnings) {
  log_ = open_python_stream(std::move(log));
  warnings_ = open_python_stream(std::move(warnings));
  pyb::gil_scoped_release released;
  auto config = read_config(source);
  if (!config) raise(ErrorKind::config, config.error().message);
  config_ = std::move(config).value();
  if (const std::string problem = new_run_problem(config_); !problem.empty())
    raise(ErrorKind::config, problem);
  register_cpu_kernels(registry_);

  // As `trainrr record` does it: the recorder digests (and embeds) the data first, the trace is started
  // only once the run is set up, so a refused run leaves an earlier trace in place.
  if (record) {
    RecordOptions ro;
    ro.path = record->path;
    ro.level = parse_level(record->level);
    ro.checkpoint_every = record->checkpoint_every;
    ro.embed_data = record->embed_data;
    checkpoint_every_ = record->checkpoint_every;
    auto recorder = Recorder::create(config_, ro);
    if (!recorder)
      raise(starts_with(recorder.error().message, record->path) ? ErrorKind::trace
                                                                 : kind_of(recorder.error().message, config_.data),
            recorder.error().message);
    recorder_ = std::move(recorder).value();
    auto isa = runtime_isa();
    if (!isa) raise(ErrorKind::config, isa.error().message);
    const int threads = config_.runtime.threads > 0 ? config_.runtime.threads : ThreadPool::hardware_threads();
    recorder_->set_runtime(threads, isa_name(*isa), config_.runtime.policy);
  }
  TrainingOptions opts;
  opts.registry = &registry_;
  opts.hooks = recorder_.get();
  opts.log = log_.get();
  opts.warnings = warnings_.get();
  opts.progress = progress && log_;
  opts.interrupt = &interrupted_;
  auto training = Training::create(config_, opts);
  if (!training)
    raise(training.error().machine ? ErrorKind::machine : kind_of(training.error().message, config_.data),
          training.error().message);
  training_ = std::move(training).value();
  if (recorder_ && training_->device()) recorder_->add_environment(training_->device()->environment());
  if (recorder_)
    if (Status s = recorder_->start(); !s) raise(ErrorKind::trace, s.error().message);
}

// Members go in reverse order: the training first, then the recorder it calls, then the streams both write to.
Run::~Run() = default;

std::string Run::fit(bool catch_sigint) {
  if (fitted_) raise(ErrorKind::config, "this run has been trained already");
  fitted_ = true;
  Status fit;
  Status written;
  {
    pyb::gil_scoped_release released;
    SigintScope sigint(catch_sigint, interrupted_);
    fit = training_->fit();
    if (recorder_) {
      // The final state, unless the last periodic checkpoint holds it already (as `trainrr record`); a run
      // stopped by Ctrl-C stops between two steps, and its state there is kept too.
      const int64_t step = training_->step();
      const bool interrupted =
          !fit.ok() && interrupted_.load() && fit.error().message.rfind("interrupted at step", 0) == 0;
      if ((fit.ok() || (interrupted && step > 0)) &&
          (checkpoint_every_ == 0 || step % checkpoint_every_ != 0))
        recorder_->checkpoint(training_->state());
      // The footer: "completed", "interrupted at step N" (Ctrl-C, no error), or the error.
      written = recorder_->finish(fit.ok(), fit.ok()      ? "completed"
                                            : interrupted ? fit.error().message
                                                          : "error: " + fit.error().message);
    }
  }
  if (!fit.ok() && !interrupted_.load()) raise(ErrorKind::config, fit.error().message);
  if (!written.ok()) raise(ErrorKind::trace, written.error().message);
  return fit.ok() ? "completed" : fit.error().message;
}

Evaluation Run::evaluate(Dataset data) {
  pyb::gil_scoped_release released;
  data.num_classes = infer_num_classes(data.y);
  return training_->evaluate(data);
}

Evaluation Run::evaluate_test() {
  pyb::gil_scoped_release released;
  return training_->evaluate(training_->test_data());
}

Tensor Run::predict(Tensor x) {
  pyb::gil_scoped_release released;
  return training_->predict(x);
}

}  // namespace trainrr::py
