#pragma once
// The hooks that record: every choice and observation of a run, appended to a trace as it trains.
// The recorder never changes a decision, so a recorded run computes exactly what an unrecorded one does.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/config.h"
#include "engine/hooks.h"
#include "recorder/kernel_gatherer.h"
#include "recorder/kernel_source.h"
#include "traces/trace.h"
#include "traces/trace_writer.h"

namespace trainrr {

struct RecordOptions {
  std::string path;  // the trace file to write
  ProbeLevel level = ProbeLevel::step;
  int64_t checkpoint_every = 0;  // steps; 0: no checkpoints but the final one
  bool embed_data = false;       // store the data files in the trace
  // In a run on a GPU, gather the kernels it launches (CUPTI). false: none are gathered, and the header says
  // so (a run that another profiler is profiling, or one timed without CUPTI).
  bool kernels = true;
};

// Why a trace of a run on a GPU holds no kernels when RecordOptions::kernels is false.
inline constexpr std::string_view kKernelsNotAsked = "not asked for (trainrr record --no-kernels)";

// The site of the kernels a step launched after its last op (its updates) and before its end.
inline constexpr std::string_view kStepEndSite = "(step end)";

class Recorder : public Hooks {
 public:
  // Digests (and with embed_data reads) the configuration's data files now; errors name the file.
  static Result<std::unique_ptr<Recorder>> create(const RunConfig& config, const RecordOptions& options);
  ~Recorder() override;

  // Called by the run once it knows its threads, instruction set and policy (before training).
  void set_runtime(int threads, const std::string& isa, const std::string& policy);
  // Entries the run's device adds to the environment (DeviceBackend::environment), before start().
  void add_environment(const std::vector<std::pair<std::string, std::string>>& entries) {
    header_.environment.insert(header_.environment.end(), entries.begin(), entries.end());
  }
  // A data-parallel run: this trace is rank `rank` of `world_size` under run id `run_id`; the MPI library
  // and its allreduce settings go into the environment (call after set_runtime).
  void set_rank(int rank, int world_size, const std::string& run_id, const CollectiveSettings& settings);
  // Where the run's GPU kernels come from. By default a run on a GPU (runtime.device not "cpu") records them from
  // the registered source (set_kernel_source_factory), and a run on the CPU records none. Tests give a source
  // here (before start()): the run records its kernels from it, whatever its device.
  void set_kernel_source(std::function<std::unique_ptr<KernelSource>()> make) {
    kernel_source_ = std::move(make);
    wants_kernels_ = true;
  }
  // Creates the trace file and writes its header; returns status(). Call it once the run is set up (after
  // Training::create): until then the path is not touched, so a run refused for its configuration, data or
  // model leaves an earlier trace there intact. Without this call the first step (or finish) starts it.
  // A run that records GPU kernels starts gathering them here, on the device the run opened.
  Status start();

  // The first write error, if any (a full disk, say); recording stops at the first one.
  const Status& status() const { return status_; }
  // A trace that cannot be written stops the run: training on would record nothing.
  Status health() const override { return status_; }
  // Writes the footer. `reason`: "completed", or why the run stopped. A completed run's trace keeps its final
  // state: where no checkpoint holds it, this writes no footer and returns an error that says to call the
  // overload below (a reader takes a completed trace without its final state for a damaged one).
  Status finish(bool completed, const std::string& reason);
  // The same, after writing `final_state` (Training::state() once fit returns) as the trace's final
  // checkpoint, where no checkpoint of its step was written and a step was: every trace keeps its initial and
  // its final state (export --step N past the end gives the final one).
  Status finish(const TrainState& final_state, bool completed, const std::string& reason);
  uint64_t bytes_written() const;
  const std::string& path() const { return options_.path; }
  // After start(): whether the run's GPU kernels are being gathered, and if not, why (empty on the CPU).
  bool kernels_recorded() const { return header_.kernels_recorded; }
  const std::string& kernels_not_recorded() const { return header_.kernels_not_recorded; }

  // Hooks.
  void seed(uint64_t& seed, bool from_entropy) override;
  void rng_values(const RngDraw& draw, std::span<const std::byte> values) override;
  void split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) override;
  void shuffle(std::string_view site, int epoch, std::vector<uint32_t>& permutation,
               const RngDraw* draw) override;
  void batch_order(int64_t step, int64_t& batch) override;
  void kernel_selected(KernelChoice& choice) override;
  void accumulated(std::string_view site, const std::vector<uint32_t>& order) override;
  void collective(const CollectiveCall& call) override;
  ProbeLevel probe_level() const override { return options_.level; }
  void probe(std::string_view site, Phase phase, const Tensor& value) override;
  void probe_unchanged(std::string_view site, Phase phase, const Tensor& value) override;
  void op_done(std::string_view site) override;
  void step_begin(int64_t step, int epoch, int64_t batch) override;
  void step_end(const StepSummary& summary) override;
  void epoch_end(const EpochSummary& summary) override;
  // The new trace's name beside the path while it waits to replace an earlier trace there ("" otherwise).
  std::string pending_name() const { return writer_ ? writer_->pending_name() : std::string(); }
  // finish() found the trace removed or moved away while it was recorded.
  bool trace_gone() const { return writer_ && writer_->gone(); }
  bool wants_checkpoint(int64_t steps_completed) override;
  void checkpoint(const TrainState& state) override;

 private:
  Recorder() = default;
  void keep(Status s);
  // GPU kernels: started with the trace (the header says whether they are recorded, or why not); each op of a
  // step tagged with its external id; at the step's end, what the source gathered joined to the ops.
  void start_kernels();
  bool seeded_ = false;  // the header is complete: seed() has been called
  bool initial_written_ = false;  // the checkpoint before the first step
  int64_t last_checkpoint_ = -1;  // the step of the last checkpoint written
  int64_t steps_ended_ = 0;       // the steps completed as of the last step end written
  bool writing() const { return writer_ && status_.ok(); }

  RecordOptions options_;
  trace::TraceHeader header_;
  std::unique_ptr<trace::TraceWriter> writer_;
  trace::TraceStep pending_;
  // This step's update-phase probes. A parameter's update probe sees its value at the step's end (hooks.h),
  // so at level op the step end takes the digest from there instead of hashing the parameter again.
  struct UpdateDigest {
    const float* data;
    int64_t size;
    uint64_t digest;
  };
  std::vector<UpdateDigest> update_digests_;
  // The previous probe's tensor and fingerprint, for a probe of the same tensor unchanged (hooks.h).
  struct LastProbe {
    const float* data = nullptr;
    int64_t size = 0;
    Fingerprint fingerprint;
  };
  LastProbe last_probe_;
  void add_probe(std::string_view site, Phase phase, const Tensor& value, const Fingerprint& f);
  Status status_;

  std::string device_;                      // the run's device: "cpu", "cuda:0"
  bool wants_kernels_ = false;              // a run on a GPU, or a kernel source given
  std::function<std::unique_ptr<KernelSource>()> kernel_source_;  // set_kernel_source
  KernelGatherer kernels_;                  // gathering: the header says kernels are recorded
};

// The files a data source reads, each by its name in a trace ("data" for a CSV file; "features" and "labels"
// for npy and IDX) with the configuration key that holds its path. The recorder describes these; replay puts
// each one's copy back under the same key.
std::vector<std::pair<std::string, std::string DataConfig::*>> data_files(const DataConfig& data);

// The data files a configuration reads, digested (and read, when embedding).
Result<std::vector<trace::DatasetInfo>> describe_datasets(const DataConfig& data, bool embed);

}  // namespace trainrr
