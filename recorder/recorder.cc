#include "recorder/recorder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

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
      std::ifstream in(path, std::ios::binary);
      info.embedded.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (info.embedded.size() != info.size_bytes || trace::digest128_bytes(info.embedded) != info.digest)
        return Error{path + ": the file changed while it was being read"};
    }
    out.push_back(std::move(info));
  }
  return out;
}

namespace {

// The trace must not destroy what is not a trace: the configuration, a data file, anything else. An earlier
// trace (or an empty file) may be replaced. A trace is a regular file: its footer is synced to disk at the
// end, which a device or a pipe cannot do, so one of those is refused before training rather than after.
Status check_trace_path(const std::string& out, const std::string& config_path, const RunConfig& c) {
  namespace fs = std::filesystem;
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
  if (fs::file_size(out, ec) > 0 && !trace::TraceReader::open(out))
    return Error{out +
                 ": exists and is not a trainrr trace; refusing to overwrite it (remove it or choose "
                 "another path for the trace)"};
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
  r->header_.checkpoint_every = options.checkpoint_every;
  auto datasets = describe_datasets(config.data, options.embed_data);
  if (!datasets) return datasets.error();
  r->header_.datasets = std::move(datasets).value();
  const Result<DeviceSpec> device = parse_device(config.runtime.device);
  r->wants_kernels_ = device.ok() && !device->is_cpu();
  return r;
}

Recorder::~Recorder() { stop_kernels(); }

void Recorder::set_runtime(int threads, const std::string& isa, const std::string& policy) {
  header_.environment = capture_environment(threads, isa, policy);
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
    stop_kernels();
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
  if (kernels_) {
    in_step_ = true;
    step_ = step;
    op_ = 0;
    tag(0);
  }
}

void Recorder::op_done(std::string_view site) {
  if (!kernels_ || !in_step_) return;  // evaluation, outside every step
  // A probe's site names its op with the probe's suffix: "dense_1/matmul.fwd:out" is the op "dense_1/matmul.fwd",
  // "dense_1:out" the layer's work after its last probed op (its fused bias and activation, say).
  if (site.ends_with(":out")) site.remove_suffix(4);
  if (op_ < op_sites_.size()) {
    if (op_sites_[op_] != site) op_sites_[op_].assign(site);  // the same sites every step: no allocation
  } else {
    op_sites_.emplace_back(site);
  }
  if (tagged_) kernels_->pop();
  tagged_ = false;
  tag(op_ + 1);
}

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
  if (kernels_ && in_step_) pending_.kernels = collect_kernels();
  // A gradient that differs changes its parameter in the same step, so at level step the parameters'
  // digests carry the evidence and the gradients' are not worth their hashing time; at level op every
  // gradient is already probed where it is computed (`.bwd_weight:out`, `bias.bwd:out`).
  if (options_.level == ProbeLevel::layer) {
    end.grads.reserve(s.grads.size());
    for (const auto& [name, t] : s.grads) end.grads.emplace_back(name, digest(*t));
  }
  pending_.end = std::move(end);
  if (writing()) keep(writer_->write_step(pending_));
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
  if (writing()) keep(writer_->write_checkpoint(state));
}

Status Recorder::finish(bool completed, const std::string& reason) {
  if (!writer_ && seeded_) (void)start();
  // Kernels after the last step's end (a final evaluation) belong to no step: they are not gathered.
  stop_kernels();
  if (!writer_) return status_.ok() ? Status(Error{options_.path + ": nothing was recorded"}) : status_;
  if (!status_.ok()) return status_;
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
  if (!wants_kernels_ || kernels_ || header_.kernels_recorded || !header_.kernels_not_recorded.empty()) return;
  std::unique_ptr<KernelSource> source;
  if (kernel_source_)
    source = kernel_source_();
  else if (KernelSourceFactory factory = kernel_source_factory())
    source = factory();
  if (!source) {
    header_.kernels_not_recorded = "this trainrr was built without a kernel source (CUPTI, the CUDA backend)";
    return;
  }
  if (Status s = source->start(); !s) {
    header_.kernels_not_recorded = s.error().message.empty() ? "the kernel source did not start" : s.error().message;
    return;
  }
  header_.kernels_recorded = true;
  kernels_ = std::move(source);
}

void Recorder::tag(uint32_t op) {
  op_ = op;
  // An id that cannot be formed (a step past 2^43, an op past 2^20) leaves the op's kernels untagged: they are
  // recorded as launched outside every op.
  Result<uint64_t> id = external_id(step_, op);
  tagged_ = id.ok();
  if (tagged_) kernels_->push(*id);
}

std::optional<trace::StepKernels> Recorder::collect_kernels() {
  if (tagged_) kernels_->pop();
  tagged_ = false;
  in_step_ = false;
  // The kernels of the step's ops have run: the trainer read the step's results back before its end.
  KernelRecords records = kernels_->flush();
  std::vector<std::string> sites(op_sites_.begin(), op_sites_.begin() + std::min<size_t>(op_, op_sites_.size()));
  sites.emplace_back(kStepEndSite);  // op index op_: after the last op
  Attributor attributor(std::move(sites));
  for (KernelRecord& k : records.kernels) attributor.add(std::move(k));
  for (const ExternalCorrelationRecord& e : records.external) attributor.add(e);
  for (const ApiRecord& a : records.api) attributor.add(a);
  attributor.add_dropped(records.dropped);
  Attribution attribution = attributor.join();
  if (attribution.seen == 0 && attribution.dropped == 0) return std::nullopt;  // the step ran no kernel
  // A kernel tagged with another step's id (delivered after that step's end) cannot join that step, whose
  // record is written: it is kept in this one, unattributed, rather than lost.
  for (AttributedKernel& k : attribution.kernels)
    if (k.at && k.at->step != step_) {
      k.why = "launched by op " + std::to_string(k.at->op) + " of step " + std::to_string(k.at->step) +
              ", delivered after that step's end";
      k.at.reset();
      k.site = std::string(trace::kUnattributedSite);
    }
  return step_kernels(attribution, step_, options_.level, true);
}

void Recorder::stop_kernels() {
  if (!kernels_) return;
  if (tagged_) kernels_->pop();
  tagged_ = false;
  in_step_ = false;
  kernels_->stop();
  kernels_.reset();
}

}  // namespace trainrr
