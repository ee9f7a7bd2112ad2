#include "recorder/recorder.h"

#include <algorithm>
#include <filesystem>

#include "engine/data/file_io.h"
#include "engine/device.h"
#include "engine/fingerprint.h"
#include "recorder/environment.h"
#include "traces/trace_lock.h"
#include "traces/trace_reader.h"

namespace trainrr {

std::vector<std::pair<std::string, std::string DataConfig::*>> data_files(const DataConfig& data) {
  if (data.source == "csv") return {{"data", &DataConfig::path}};
  if (data.source == "npy" || data.source == "idx")
    return {{"features", &DataConfig::path}, {"labels", &DataConfig::labels}};
  return {};
}

Result<std::vector<trace::DatasetInfo>> describe_datasets(const DataConfig& data, bool embed) {
  std::vector<trace::DatasetInfo> out;
  for (const auto& [name, key] : data_files(data)) {
    const std::string& path = data.*key;
    trace::DatasetInfo info;
    info.name = name;
    info.path = path;
    auto d = trace::digest_regular_file(path);
    if (!d) return d.error();
    info.digest = d->digest;
    info.size_bytes = d->size;
    if (embed) {
      // Read as a regular file again: what replaced it since it was digested (a named pipe) is refused, not
      // waited on.
      auto bytes = read_file_bytes(path);
      if (!bytes) return bytes.error();
      info.embedded.assign(bytes->begin(), bytes->end());
      if (info.embedded.size() != info.size_bytes || trace::digest128_bytes(info.embedded) != info.digest)
        return Error{path + ": the file changed while it was being read"};
    }
    out.push_back(std::move(info));
  }
  return out;
}

namespace {

// The trace must not destroy what is not a trace: the configuration, a data file, anything else. An earlier
// trace (whole, cut or damaged, as show reads it) or an empty file, which holds nothing to lose, may be
// replaced. A trace is a regular file: its footer is synced to disk at the
// end, which a device or a pipe cannot do, so one of those is refused before training rather than after.
Status check_trace_path(const std::string& out, const std::string& config_path, const RunConfig& c) {
  namespace fs = std::filesystem;
  if (out.empty()) return Error{"the trace's path is empty: a trace needs a file path"};
  std::error_code ec;
  const fs::file_status st = fs::status(out, ec);
  if (st.type() == fs::file_type::not_found || st.type() == fs::file_type::none)
    return {};  // absent, or not reachable: creating the trace says why, if it cannot
  if (st.type() != fs::file_type::regular) {
    const char* kind = special_file_kind(out);
    return Error{out + ": not a regular file (it is " + (kind ? kind : "not a file") +
                 "); a trace needs a file path"};
  }
  for (const auto& [input, what] :
       {std::pair{config_path, "configuration"}, std::pair{c.data.path, "data file"},
        std::pair{c.data.labels, "labels file"}})
    if (!input.empty() && fs::equivalent(out, input, ec))
      return Error{out + ": this is the run's " + what + "; writing the trace there would destroy it"};
  // Another recording's trace is refused before training, not only when this one would start writing.
  if (std::optional<pid_t> writer = trace::writer_of(out))
    return Error{trace::recording_elsewhere(out, *writer)};
  // An earlier trace is replaced whole, cut (even inside its header) or damaged: it starts as a trace does.
  if (fs::file_size(out, ec) > 0) {
    Result<bool> trace = trace::starts_like_a_trace(out);
    if (!trace)
      return Error{trace.error().message +
                   "; refusing to overwrite what cannot be read (remove it or choose "
                   "another path for the trace)"};
    if (!*trace)
      return Error{out +
                   ": exists and is not a trainrr trace; refusing to overwrite it (remove it or choose "
                   "another path for the trace)"};
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Recorder>> Recorder::create(const RunConfig& config, const RecordOptions& options) {
  if (Status usable = check_trace_path(options.path, config.file, config); !usable) return usable.error();
  std::unique_ptr<Recorder> r(new Recorder());
  r->options_ = options;
  r->header_.config = config.text;
  // Absolute, so that a replay from another folder resolves the configuration's relative data paths.
  std::error_code ec;
  const auto absolute = std::filesystem::absolute(config.file, ec);
  r->header_.config_path = ec ? config.file : absolute.lexically_normal().string();
  r->header_.config_overrides = config.overrides;
  r->header_.level = options.level;
  r->header_.moving_statistics = true;  // the layers probe them (engine/layers/batch_normalization.h)
  r->header_.checkpoint_every = options.checkpoint_every;
  auto datasets = describe_datasets(config.data, options.embed_data);
  if (!datasets) return datasets.error();
  r->header_.datasets = std::move(datasets).value();
  const Result<DeviceSpec> device = parse_device(config.runtime.device);
  r->device_ = device.ok() ? device->str() : config.runtime.device;
  r->wants_kernels_ = options.kernels && device.ok() && !device->is_cpu();
  if (!options.kernels && device.ok() && !device->is_cpu()) r->header_.kernels_not_recorded = kKernelsNotAsked;
  return r;
}

Recorder::~Recorder() = default;

void Recorder::set_runtime(int threads, const std::string& isa, const std::string& policy) {
  header_.environment = capture_environment(threads, isa, policy, device_);
}

void Recorder::keep(Status s) {
  if (status_.ok() && !s.ok()) status_ = std::move(s);
}

uint64_t Recorder::bytes_written() const { return writer_ ? writer_->bytes_written() : 0; }

void Recorder::seed(uint64_t& seed, bool from_entropy) {
  // The seed is the first thing a run decides: the header is complete now.
  header_.seed = seed;
  header_.seed_from_entropy = from_entropy;
  seeded_ = true;
}

Status Recorder::start() {
  if (writer_ || !status_.ok()) return status_;
  if (!seeded_) return Error{options_.path + ": the run has not begun (no seed yet); nothing to record"};
  start_kernels();  // the header says whether they are recorded
  auto w = trace::TraceWriter::create(options_.path, header_);
  if (!w) {
    kernels_.stop();
    keep(w.error());
    return status_;
  }
  writer_ = std::move(w).value();
  return status_;
}

void Recorder::rng_values(const RngDraw& draw, std::span<const std::byte> values) {
  pending_.events.push_back(trace::RngDrawEvent{draw, digest_bytes(values.data(), values.size())});
}

void Recorder::split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) {
  pending_.events.push_back(trace::SplitEvent{std::string(site), train, test});
}

void Recorder::shuffle(std::string_view site, int epoch, std::vector<uint32_t>& permutation,
                       const RngDraw* draw) {
  trace::ShuffleEvent e;
  e.site = std::string(site);
  e.epoch = epoch;
  e.length = permutation.size();
  e.digest = digest(std::span<const uint32_t>(permutation));
  // A permutation drawn from a recorded stream is its draw; only one from elsewhere is stored whole.
  if (draw)
    e.draw = *draw;
  else
    e.permutation = permutation;
  pending_.events.push_back(std::move(e));
}

void Recorder::batch_order(int64_t, int64_t& batch) {
  pending_.events.push_back(trace::BatchOrderEvent{batch});
}

void Recorder::kernel_selected(KernelChoice& choice) { pending_.events.push_back(choice); }

void Recorder::collective(const CollectiveCall& call) { pending_.collectives.push_back(call); }

void Recorder::set_rank(int rank, int world_size, const std::string& run_id, const CollectiveSettings& settings) {
  header_.rank = rank;
  header_.world_size = world_size;
  header_.run_id = run_id;
  auto& env = header_.environment;
  env.emplace_back("mpi.library", settings.library);
  env.emplace_back("mpi.coll_tuned_use_dynamic_rules", settings.dynamic_rules ? "true" : "false");
  env.emplace_back("mpi.coll_tuned_allreduce_algorithm", std::to_string(settings.forced_algorithm));
  env.emplace_back("mpi.coll_tuned_allreduce_algorithm_segmentsize", std::to_string(settings.segment_bytes));
  env.emplace_back("mpi.coll", settings.components);
  env.emplace_back("mpi.coll_tuned_dynamic_rules_filename", settings.rules_file);
  env.emplace_back("mpi.coll_priorities", settings.priorities);
}

void Recorder::accumulated(std::string_view site, const std::vector<uint32_t>& order) {
  pending_.events.push_back(trace::AccumulationOrderEvent{std::string(site), order});
}

void Recorder::probe(std::string_view site, Phase phase, const Tensor& value) {
  add_probe(site, phase, value, fingerprint(value));
}

void Recorder::probe_unchanged(std::string_view site, Phase phase, const Tensor& value) {
  const bool same = last_probe_.data && last_probe_.data == value.ptr() && last_probe_.size == value.size();
  add_probe(site, phase, value, same ? last_probe_.fingerprint : fingerprint(value));
}

void Recorder::add_probe(std::string_view site, Phase phase, const Tensor& value, const Fingerprint& f) {
  if (phase == Phase::update) update_digests_.push_back({value.ptr(), value.size(), f.digest});
  last_probe_ = {value.ptr(), value.size(), f};
  pending_.events.push_back(trace::ProbeEvent{std::string(site), phase, f});
}

void Recorder::step_begin(int64_t step, int epoch, int64_t batch) {
  if (!writer_) (void)start();
  pending_.index = step;
  pending_.epoch = epoch;
  pending_.batch = batch;
  kernels_.step_begin(step);
}

void Recorder::op_done(std::string_view site) { kernels_.op_done(site); }

void Recorder::step_end(const StepSummary& s) {
  trace::StepEnd end;
  end.loss = s.loss;
  end.metrics = s.metrics;
  std::vector<std::pair<std::string, uint64_t>> each;
  each.reserve(s.params.size());
  for (const auto& [name, tensor] : s.params) {
    const Tensor* t = tensor;  // a structured binding cannot be captured by a lambda before C++20 in clang 14
    // The latest update probe of this tensor, if any.
    auto probed = std::find_if(update_digests_.rbegin(), update_digests_.rend(), [t](const UpdateDigest& u) {
      return u.data == t->ptr() && u.size == t->size();
    });
    each.emplace_back(name, probed != update_digests_.rend() ? probed->digest : digest(*t));
  }
  update_digests_.clear();
  last_probe_ = {};
  end.params = trace::parameter_digests(std::move(each), options_.level);
  if (kernels_.in_step()) pending_.kernels = kernels_.step_end(options_.level, kStepEndSite);
  // A gradient that differs changes its parameter in the same step, so at level step the parameters'
  // digests carry the evidence and the gradients' are not worth their hashing time; at level op every
  // gradient is already probed where it is computed (`.bwd_weight:out`, `bias.bwd:out`).
  if (options_.level == ProbeLevel::layer) {
    end.grads.reserve(s.grads.size());
    for (const auto& [name, t] : s.grads) end.grads.emplace_back(name, digest(*t));
  }
  pending_.end = std::move(end);
  if (writing()) {
    keep(writer_->write_step(pending_));
    steps_ended_ = pending_.index + 1;
  }
  pending_.events.clear();
  pending_.collectives.clear();
  pending_.end.reset();
  pending_.kernels.reset();
}

void Recorder::epoch_end(const EpochSummary& e) {
  if (writing()) keep(writer_->write_epoch(trace::TraceEpoch{e.epoch, e.logs}));
}

bool Recorder::wants_checkpoint(int64_t steps_completed) {
  // The initial state always: the weights a cross-check in another framework starts from (export --step 0).
  if (steps_completed == 0) {
    if (!writer_ && seeded_) (void)start();  // as the first step would
    return writing() && !initial_written_;
  }
  return writing() && options_.checkpoint_every > 0 && steps_completed % options_.checkpoint_every == 0;
}

void Recorder::checkpoint(const TrainState& state) {
  if (state.step == 0) initial_written_ = true;
  last_checkpoint_ = state.step;
  if (writing()) keep(writer_->write_checkpoint(state));
}

Status Recorder::finish(const TrainState& final_state, bool completed, const std::string& reason) {
  if (final_state.step > 0 && final_state.step != last_checkpoint_ && writing()) checkpoint(final_state);
  return finish(completed, reason);
}

Status Recorder::finish(bool completed, const std::string& reason) {
  if (!writer_ && seeded_) (void)start();
  // Kernels after the last step's end (a final evaluation) belong to no step: they are not gathered.
  kernels_.stop();
  if (!writer_) return status_.ok() ? Status(Error{options_.path + ": nothing was recorded"}) : status_;
  if (!status_.ok()) return status_;
  if (completed && steps_ended_ > 0 && last_checkpoint_ != steps_ended_)
    return Error{options_.path + ": the run completed, but its final state (after step " +
                 std::to_string(steps_ended_) + ") is not in the trace" +
                 (last_checkpoint_ >= 0
                      ? " (its last checkpoint is after step " + std::to_string(last_checkpoint_) + ")"
                      : std::string()) +
                 ": finish(training.state(), true, \"completed\") records it; no footer was written"};
  trace::TraceFooter f;
  f.completed = completed;
  f.end_reason = reason;
  if (!pending_.events.empty()) {
    // Events after the last step (none today; evaluation makes no choices) still get written.
    pending_.index += 1;
    keep(writer_->write_step(pending_));
  }
  keep(writer_->finish(f));
  return status_;
}

// --- GPU kernels ---

void Recorder::start_kernels() {
  if (!wants_kernels_ || kernels_.gathering() || header_.kernels_recorded || !header_.kernels_not_recorded.empty())
    return;
  std::unique_ptr<KernelSource> source;
  if (kernel_source_)
    source = kernel_source_();
  else if (KernelSourceFactory factory = kernel_source_factory())
    source = factory();
  if (Status s = kernels_.start(std::move(source)); !s) {
    header_.kernels_not_recorded = s.error().message;
    return;
  }
  header_.kernels_recorded = true;
}

}  // namespace trainrr
