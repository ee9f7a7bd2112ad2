#pragma once
// The hooks that replay: they read the trace a step ahead of the run, serve recorded decisions for the
// forced kinds, and compare every observation with the recorded one. Events are aligned by
// (step, kind, site, occurrence), so an extra or missing event is reported as such and does not shift
// everything after it.

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/hooks.h"
#include "recorder/kernel_gatherer.h"
#include "replayer/data_reach.h"
#include "replayer/divergence.h"
#include "replayer/force.h"
#include "replayer/page_views.h"
#include "traces/trace_reader.h"

namespace trainrr {

// The first kernel that differs between the recorded and the replayed kernels of one op, each side as
// "name grid(x,y,z) block(x,y,z)" with the name demangled, or "no kernel" where that side launched fewer.
struct KernelDifference {
  std::string op;  // the op's site ("dense_1/matmul.fwd"); empty at level step, which keeps no launches
  std::string recorded, replayed;
  // Per op: the position of the differing launch in the op's sequence, each side's launch there (null where
  // that side launched fewer; valid while the compared records are) and how many launches each side's op has.
  size_t index = 0;
  const trace::KernelLaunch* recorded_launch = nullptr;
  const trace::KernelLaunch* replayed_launch = nullptr;
  size_t recorded_in_op = 0, replayed_in_op = 0;
};

// The first op whose kernels differ between two records of one step, compared at the recorded level: per op,
// the sequence of (name, grid, block) in launch order; at level step, which keeps only a count and a digest,
// the whole step's. `prefer_op`: the op to report when its kernels differ. Kernels no op claims
// (trace::kUnattributedSite) are left out unless `unattributed` is set.
std::optional<KernelDifference> first_kernel_difference(const trace::StepKernels& recorded,
                                                        const trace::StepKernels& replayed,
                                                        const std::string& prefer_op = "", bool unattributed = false);
// The same kernel: name, grid and block.
bool same_launch(const trace::KernelLaunch& a, const trace::KernelLaunch& b);
// A kernel as the notes name it: "name grid(x,y,z) block(x,y,z)", the name as CUPTI gives it or demangled.
std::string launch_str(const trace::KernelLaunch& k, bool demangle);

struct CapturedProbe {
  std::string site;
  Phase phase;
  Tensor value;
  bool step_end = false;  // a gradient or a parameter at the step's end ("dense_1.kernel:grad"), not a probe
};

// Why kernel `id`, recorded at a site of op `op` (op_name's words) in the trace of `header`, cannot be what
// ran there ("" when it can): a kernel of another op, or, in a trace this version of trainrr wrote, one that
// no build of it has (kernel_op_in_any_build).
std::string impossible_kernel(const std::string& id, const std::string& op, const trace::TraceHeader& header);
// Why a recorded kernel choice cannot be what its run chose ("" when it can): its kernel cannot be what ran
// at its op's site (impossible_kernel), or is not among the candidates the choice records (a choice picks one
// of its candidates).
std::string impossible_choice(const KernelChoice& choice, const trace::TraceHeader& header);

class ReplayHooks : public Hooks {
 public:
  // `level`: probes the run makes (at least the recorded level); `compare`: report divergences.
  ReplayHooks(trace::TraceReader& reader, ForceSet force, ProbeLevel level, bool compare = true);

  // Whether the split this run made, before the recorded one was served in its place, was another: with the
  // trace's own configuration, data and draws, the recorded split is not one that configuration makes.
  bool served_split_differs() const { return served_split_differs_; }
  const std::string& served_split_detail() const { return served_split_detail_; }

  // A reader error (a truncated trace: the replay ends where the trace does).
  const Status& status() const { return status_; }
  bool diverged() const { return first_.has_value(); }
  const std::optional<FirstDivergence>& first() const { return first_; }
  // A difference found once the steps are done (the final state): the first divergence, where none was.
  void diverge_at_end(FirstDivergence d) {
    if (!first_) first_ = std::move(d);
  }
  // The first recorded draw of the initial weights (stream "init/...") that the set-up here did not make (a
  // layer initialized with zeros, a layer without a bias), as the end of the step would report it; nullopt
  // where the set-up made every one. Asked before the first step runs, once the set-up is done.
  std::optional<FirstDivergence> unmade_initial_draw();
  // The step whose record no later message of the trace vouched for (the last of a trace cut short), if the
  // replay read it.
  std::optional<int64_t> unvouched_step() const {
    const auto at = reader_->unvouched();
    return at && last_step_at_ && last_step_at_->second == *at ? std::optional<int64_t>(last_step_at_->first)
                                                               : std::nullopt;
  }
  // Step `step` takes batch `batch`, whatever the loader proposes or the trace forces.
  void take_batch(int64_t step, int64_t batch) { take_batch_ = {step, batch}; }
  // The order of the epoch a replay resumed in, which the checkpoint holds (no shuffle is made for it).
  void resumed_order(int epoch, const std::vector<uint32_t>& order) {
    schedule_.orders.emplace(epoch, order);
  }
  // Kernel sites whose selection differs: site -> (recorded, replayed).
  const std::map<std::string, std::pair<std::string, std::string>>& kernel_differences() const {
    return kernel_diffs_;
  }
  // Forced sites whose recorded kernel cannot run here, so this machine's own choice ran instead.
  struct Substitution {
    std::string site, recorded, replayed;
    std::string why;  // what the device said, when it was the device that could not run the recorded kernel
  };
  const std::vector<Substitution>& substituted() const { return substituted_; }
  // A recorded accumulation order that was forced but could not be served (it orders another number of
  // partials than the kernel made here): the kernel added its partials in its own order. The first per site.
  struct UnservedOrder {
    int64_t step = 0;
    size_t recorded = 0, made = 0;  // partials the recorded order names, and those the kernel made here
  };
  const std::map<std::string, UnservedOrder>& unserved_orders() const { return unserved_orders_; }
  // Sites whose completion order differed from the recording (not forced), before the first divergence.
  const std::map<std::string, int64_t>& order_differences() const { return order_diffs_; }
  const std::map<std::string, std::string>& replayed_kernels() const { return replayed_kernels_; }
  const std::map<std::string, std::string>& recorded_kernels() const { return recorded_kernels_; }
  // Kernel site -> the whole choice the replay made there (forced: the recorded one).
  const std::map<std::string, KernelChoice>& replayed_choices() const { return replayed_choices_; }
  // Kernel site -> how the recording and the replay picked their kernels there (kernel_pick), where either
  // was picked by timing.
  std::map<std::string, std::pair<std::string, std::string>> kernel_picks() const;
  uint64_t replayed_seed() const { return replayed_seed_; }
  // Recorded and replayed loss per step, for reports.
  const std::vector<std::pair<double, double>>& losses() const { return losses_; }
  // Moves the per-step views of the report's page (losses, epochs, what differed by how much, step by step)
  // into `page`, once the replay is over. It reads the recorded epoch that ends the last step replayed, when
  // the replay stopped before reading it; what it reads there changes neither status() nor at_end().
  void finish_views(PageViews& page);
  int64_t steps_compared() const { return steps_compared_; }

  // Whether the trace has no step left for the run's next step (loads it to find out).
  bool at_end() {
    if (!cur_.loaded && !cur_.exhausted) load_next();
    return cur_.exhausted;
  }
  // Whether the trace was read to its footer (the recording finished writing it).
  bool trace_ended_cleanly() const { return reader_->ended_cleanly(); }
  // Why reading the trace stopped, when it stopped at damage (a changed or malformed message) rather than
  // at the end of the file or where a recording was cut.
  std::optional<std::string> trace_damage() const {
    const auto& stop = reader_->stopped();
    if (!stop || stop->truncated || status_.ok()) return std::nullopt;
    return status_.error().message;
  }
  // Draws that matched, per stream (evidence that other streams were unaffected).
  const std::map<std::string, int64_t>& matched_draws() const { return matched_draws_; }

  // Narrows forcing to some choice units: "seed", "rng:<stream>", "split", "shuffle", "loader",
  // "kernel:<site>" (bisection forces subsets of them). Without a filter every unit of a forced kind is.
  // The kernel to run at each site chosen free (not forced to the recorded one): a re-execution of a step as
  // the replay ran it takes the replay's choices rather than selecting again. A kernel not among a site's
  // candidates is not taken.
  void pin_kernels(std::map<std::string, std::string> kernels) { pinned_kernels_ = std::move(kernels); }
  void set_force_filter(std::function<bool(const std::string& unit)> filter) { filter_ = std::move(filter); }
  bool filtered() const { return static_cast<bool>(filter_); }
  // Whether a kernel id can run on this machine. Without it, a recorded kernel counts as runnable when the
  // selection listed it among its candidates.
  void set_runnable(std::function<bool(const std::string& id)> runnable) { runnable_ = std::move(runnable); }

  // A recorded kernel choice no trainrr can run at its site, in words ("step 0: the recorded kernel
  // f32_sum__cpu_pairwise at dense_1/matmul.fwd is a kernel of op reduce, and the site's op is matmul"): the
  // trace does not follow the run it describes, and the replay must stop as bad input (the site was left to
  // this machine's choice). nullopt while every recorded kernel is one of its site's op.
  const std::optional<std::string>& kernel_refusal() const { return kernel_refusal_; }

  // Keeps a copy of every probed tensor of step `step`, then of its gradients and parameters at its end, in
  // the order the replay compares them, and its loss.
  void capture_step(int64_t step) { capture_step_ = step; }
  const std::vector<CapturedProbe>& captured() const { return captured_; }
  const std::optional<double>& captured_loss() const { return captured_loss_; }

  // Moves to the recorded step `step` (a run resumed from a checkpoint), learning the kernel choices
  // recorded before it on the way.
  Status skip_to(int64_t step);
  // Says, before the run is set up, that it will resume from the checkpoint of step `step` (> 0). Its set-up
  // still splits the data and keys its streams, which the checkpoint does not hold, and those are compared;
  // the draws of the initial weights are not: the checkpoint's weights replace what they drew.
  void resume_at(int64_t step) { resume_at_ = step; }
  // The kernels a resumed run chose otherwise than the recording, free, where the recording chose before the
  // step it resumes at (on another step's batch): the step of the recording's choice and both reasons.
  struct ResumedChoice {
    int64_t recorded_step = 0;
    std::string reason_here, reason_recorded;
  };
  const std::map<std::string, ResumedChoice>& resumed_choices() const { return resumed_choices_; }

  // The first allreduce call of a data-parallel run whose digests differ from the recording's: its rows
  // (kind "sharding"), this rank's shard gradients going in ("input"), or the sum coming out ("result").
  struct CollectiveMismatch {
    std::string kind;
    int shard = -1;  // sharding, input: the first differing shard of the rank
    CollectiveCall recorded, replayed;
  };
  const std::optional<CollectiveMismatch>& collective_mismatch() const { return collective_mismatch_; }
  int64_t collectives_compared() const { return collectives_compared_; }

  // GPU kernels. A replay on the GPU gathers the kernels it launches from `source`, step by step, as the recorder
  // does, and compares each step's with the recorded ones. A source that cannot start gathers nothing: a note
  // says why.
  void gather_kernels(std::unique_ptr<KernelSource> source);
  bool gathers_kernels() const { return gatherer_.gathering(); }
  // Notes on the replay's kernels: why they were not gathered, or the first op (in a step whose outputs
  // matched) that launched other kernels than recorded.
  const std::vector<std::string>& kernel_notes() const { return kernel_notes_; }
  // The kernels the replay gathered in the step of the first divergence (none where it ran none, or before it).
  const std::optional<trace::StepKernels>& divergent_step_kernels() const { return divergent_kernels_; }
  // At the first divergence, where its op launched other kernels than recorded: the first that differs.
  const std::optional<KernelDifference>& divergent_kernel_difference() const { return divergent_difference_; }

  // The replay's split, each epoch's order and the batch each step took, as the run used them (forced or
  // not).
  const DataSchedule& schedule() const { return schedule_; }

  // Hooks.
  void op_done(std::string_view site) override;
  void collective(const CollectiveCall& call) override;
  void seed(uint64_t& seed, bool from_entropy) override;
  void rng_draw(RngDraw& draw) override;
  void rng_values(const RngDraw& draw, std::span<const std::byte> values) override;
  void split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) override;
  void shuffle(std::string_view site, int epoch, std::vector<uint32_t>& permutation,
               const RngDraw* draw) override;
  void batch_order(int64_t step, int64_t& batch) override;
  void batch_refused(int64_t step, int64_t asked, int64_t instead, const std::string& why) override;
  void kernel_selected(KernelChoice& choice) override;
  void kernel_replaced(std::string_view site, const std::string& ran, const std::string& why) override;
  void accumulation_order(std::string_view site, std::vector<uint32_t>& order) override;
  void accumulated(std::string_view site, const std::vector<uint32_t>& order) override;
  ProbeLevel probe_level() const override { return level_; }
  void probe(std::string_view site, Phase phase, const Tensor& value) override;
  void probe_unchanged(std::string_view site, Phase phase, const Tensor& value) override;
  void step_begin(int64_t step, int epoch, int64_t batch) override;
  void step_end(const StepSummary& summary) override;
  void epoch_end(const EpochSummary& summary) override;

 private:
  void batch_order_checked(int64_t step, int64_t& batch);
  void split_checked(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test);
  void shuffle_checked(std::string_view site, int epoch, std::vector<uint32_t>& permutation,
                       const RngDraw* draw);
  DataSchedule schedule_;
  std::optional<std::pair<int64_t, int64_t>> take_batch_;
  std::optional<std::pair<int64_t, uint64_t>> last_step_at_;  // the last step read: its index and offset
  // The recorded step the run is in, with its events indexed by (kind, site).
  struct Current {
    bool loaded = false;
    bool exhausted = false;  // the trace has no more steps
    trace::TraceStep step;
    std::map<std::string, std::deque<size_t>> by_key;
    // Where the replay stands in the recorded events: the index of the last one taken, whether the last take
    // found one, and the highest index taken (-1: none).
    int64_t last_taken = -1, max_taken = -1;
    bool last_found = false;
    // The first divergence found in this step, by its place among the recorded events: twice the index of the
    // event it compares with, or one more than twice the highest taken for an event the recording lacks.
    std::optional<int64_t> first_order;
  };
  bool load_next();
  const trace::Event* peek(const std::string& key);
  const trace::Event* take(const std::string& key);
  void diverge(FirstDivergence d);
  // Each gradient and parameter digest against the recording's, for the page's views.
  void compare_tensors(const trace::StepEnd& recorded, const StepSummary& now);
  bool probe_recorded(std::string_view site) const;
  // Compares a probe with the recording's; `known`: its digest, when already computed.
  void check_probe(std::string_view site, Phase phase, const Tensor& value, const uint64_t* known);
  // The previous probe's tensor and digest (when one was computed), for a probe of it unchanged.
  struct LastProbe {
    const float* data = nullptr;
    int64_t size = 0;
    uint64_t digest = 0;
  };
  LastProbe last_probe_;

  trace::TraceReader* reader_;
  ForceSet force_;
  ProbeLevel level_;
  bool compare_;
  Status status_;
  Current cur_;
  int64_t step_ = -1;  // the step being executed (-1: before the first)
  // Epoch -> its recorded metrics, as the trace's epoch messages are read.
  std::map<int, std::vector<std::pair<std::string, double>>> recorded_epochs_;
  std::map<std::string, int64_t> recorded_choice_steps_;  // the step each site's recorded choice was made in
  std::map<std::string, ResumedChoice> resumed_choices_;
  int64_t resume_at_ = 0;  // the checkpoint's step a resumed run starts at (resume_at); 0: from the start
  bool served_split_differs_ = false;
  std::string served_split_detail_;
  std::optional<FirstDivergence> first_;
  std::map<std::string, std::string> recorded_kernels_, replayed_kernels_;
  std::map<std::string, std::string> pinned_kernels_;                        // pin_kernels
  std::map<std::string, KernelChoice> recorded_choices_, replayed_choices_;  // the whole choices, for causes
  std::map<std::string, std::pair<std::string, std::string>> kernel_diffs_;
  std::function<bool(const std::string&)> runnable_;
  std::optional<std::string> kernel_refusal_;
  std::vector<Substitution> substituted_;
  std::map<std::string, UnservedOrder> unserved_orders_;
  uint64_t replayed_seed_ = 0;
  std::vector<std::pair<double, double>> losses_;
  StepViews views_;
  int64_t steps_compared_ = 0;
  std::map<std::string, int64_t> matched_draws_;
  // Site -> the draw this run reached there before the recorded one was forced in its place.
  std::map<std::string, RngDraw> reached_;
  std::map<std::string, int64_t> order_diffs_;  // site -> first step where the order differed
  std::function<bool(const std::string&)> filter_;
  bool forced(bool kind, const std::string& unit) const { return kind && (!filter_ || filter_(unit)); }
  std::optional<CollectiveMismatch> collective_mismatch_;
  size_t collective_index_ = 0;  // the next recorded call of this step
  int64_t collectives_compared_ = 0;
  int64_t capture_step_ = -2;
  std::vector<CapturedProbe> captured_;
  std::optional<double> captured_loss_;
  std::map<std::string, Summary> step_summaries_;  // replayed summaries of this step's probes
  void compare_kernels(int64_t step);
  KernelGatherer gatherer_;
  std::vector<std::string> kernel_notes_;
  bool kernel_note_said_ = false;  // the note of a step with matching outputs and other kernels, said once
  std::optional<trace::StepKernels> divergent_kernels_;
  std::optional<KernelDifference> divergent_difference_;
};

}  // namespace trainrr
