#pragma once
// Replay: rebuild a run from its trace alone, run it under a forcing policy, compare every observation
// with the recorded one, and explain the first divergence.

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
#include "engine/device_backend.h"
#include "engine/kernels/kernel_registry.h"
#include "recorder/kernel_source.h"
#include "replayer/cause.h"
#include "replayer/divergence.h"
#include "replayer/force.h"
#include "replayer/scratch.h"
#include "traces/trace.h"
#include "traces/trace_reader.h"

namespace trainrr {

struct ReplayOptions {
  std::string trace_path;
  ForceSet force = ForceSet::all();
  std::vector<std::string> overrides;  // --set, on top of the recorded configuration
  std::string data_path;               // --data: where the data file is now
  bool allow_data_change = false;      // go on when the data's digest differs (cause: data)
  int64_t from_step = 0;               // start at the last checkpoint at or before this step
  int64_t to_step = -1;                // stop before this step (-1: the end of the trace)
  bool keep_going = false;             // run past the first divergence (drift curves)
  bool element_detail = true;          // re-execute the divergent step both ways for element values
  FILE* log = nullptr;                 // progress
  // For tests only: the device to replay on in place of the one runtime.device names (the emulated device,
  // engine/emulated_device.h; it must outlive the replay), and the source of the replay's GPU kernels in place
  // of the registered one (set_kernel_source_factory), used whatever the device. A replay from the command line
  // leaves both unset.
  DeviceBackend* test_device = nullptr;
  std::function<std::unique_ptr<KernelSource>()> test_kernel_source;
  // For tests only: the device that the recorded side of the element re-execution runs on, when the trace was
  // recorded on another device than the replay's (locate_element).
  DeviceBackend* test_recorded_device = nullptr;
};

struct ReplayResult {
  int exit_code = 0;  // 0 reproduced, 1 diverged, 2 bad input, 3 cannot replay here
  std::string error;  // for exit codes 2 and 3
  DivergenceReport report;
  int64_t steps_executed = 0;  // every step run, the re-executions for element detail included
  // Set when the trace is damaged (a message changed after it was written): what was compared stops before
  // it, and the command exits 2 after its report.
  std::optional<std::string> damage;
};

ReplayResult replay(const ReplayOptions& options);

// An error when `path` is not one process's trace that `what` ("replay", "diff", "bisect") can take: the
// folder of a data-parallel run or one rank's trace of it (the run's ranks go together: replay_run,
// diff_runs), or a trace that holds no complete step (a recording killed during its first step, or a run that
// stopped before it), which has nothing to compare. The header's seed against the configuration it holds: the
// seed it gives, or none where the header says the seed was drawn from the OS. An error names the trace and
// both.
Status seed_follows_config(const trace::TraceHeader& h, const std::string& path);
Status require_replayable_trace(const std::string& path, const std::string& what);
// An error when the trace at `path` (one process's, or one rank's of a run) holds no complete step, or is
// damaged before its first step ends: there is nothing to compare.
Status require_complete_step(const std::string& path);

// The recorded run's configuration, with its data taken from the trace (embedded copies, written to
// `scratch`), from `data_path`, or from the recorded paths, each checked against its digest.
// `data_changed` is set when a digest differs and `allow_change` let it through; otherwise the error says
// what differs, then `refusal` (what to do, for the command that asks; empty: replay's --allow-data-change).
// The trace is untrusted: its data set names and paths never name a file that is written; the embedded
// copies get names of trainrr's own in `scratch`, and every file read must be a regular file of the
// recorded size before it is hashed.
struct RebuiltRun {
  RunConfig config;
  bool data_changed = false;
  std::string data_detail;  // every file that differs, in words
  std::vector<std::string>
      data_sets_changed;  // the trace's names of those files ("data", "features", "labels")
  // Which copy of the data was used, when the user chose it; each --set that changes nothing.
  std::vector<std::string> notes;
};

// A note for each --set override that leaves its key as the recorded configuration has it (the last --set of
// a key counts): a replay that reproduces with it did not show that the change makes no difference.
std::vector<std::string> unchanged_overrides(const RunConfig& recorded, const RunConfig& replayed,
                                             const std::vector<std::string>& overrides);
// `trace_path`, where given, opens the error that the trace contradicts itself (a message of one trace among
// several names it).
// Where the trace's configuration names a data file by another path than the header's record of that file
// (its datasets[i].path, whose digest it holds): the message that says so, naming the trace, the key and the
// fields. A trace that trainrr record wrote never does. (An embedded copy's recorded path is for people: it
// is read from the trace.)
std::optional<std::string> data_path_not_recorded(const trace::TraceHeader& h, const std::string& trace_path);

Result<RebuiltRun> rebuild_config(const trace::TraceHeader& header, const std::vector<std::string>& overrides,
                                  const std::string& data_path, bool allow_change, ScratchDir& scratch,
                                  const std::string& refusal = "", const std::string& trace_path = "");

// Ctrl-C for replays run inside another program (the Python module, where the command's default of ending
// the process is not wanted): while a ReplayInterruptScope lives on a thread, every re-execution that thread
// sets up (make_replay_side: replay's, bisect's) stops before its next step once `flag` is set, as a
// recording stops (TrainingOptions::interrupt), and the replay fails with "interrupted at step N". Per
// thread, so that replay and bisect take it without each passing it down; `flag` is set by a signal handler.
class ReplayInterruptScope {
 public:
  explicit ReplayInterruptScope(const std::atomic<bool>* flag);
  ~ReplayInterruptScope();
  ReplayInterruptScope(const ReplayInterruptScope&) = delete;
  ReplayInterruptScope& operator=(const ReplayInterruptScope&) = delete;

 private:
  const std::atomic<bool>* previous_;
};

// One re-execution of a trace, resumed at the last checkpoint at or before `from`. `force` with an optional
// unit filter (ReplayHooks::set_force_filter); `compare` makes its hooks report divergences.
class ReplayHooks;
class Training;
class CheckpointReader;
struct ReplaySide {
  std::unique_ptr<trace::TraceReader> reader;
  std::unique_ptr<ReplayHooks> hooks;
  std::unique_ptr<Training> training;
  int64_t resumed_at = 0;
  bool from_checkpoint = false;  // resumed at a checkpoint (else from step 0)
  // Asked to start after step 0, started at step 0: why ("the last checkpoint at or before step 10 is the
  // initial state", "the trace has no checkpoint at or before step 10").
  std::string why_from_step_zero;
  // The trace's checkpoints (step -> byte offset) and a reader of them, set up by checkpoint_difference the
  // first time it asks.
  std::optional<std::map<int64_t, uint64_t>> checkpoints;
  std::unique_ptr<CheckpointReader> checkpoint_reader;
  ReplaySide();
  ReplaySide(ReplaySide&&) noexcept;
  ~ReplaySide();
};
// The state `side`'s run has set up, before its first step, against the trace's initial checkpoint (what
// export --step 0 gives): a recorded draw of the initial weights that the set-up did not make (another
// initializer) first, then the tensors. nullopt where they are the same or the trace holds no such
// checkpoint.
std::optional<FirstDivergence> initial_state_difference(const std::string& trace_path, ReplaySide& side);
// The state `side`'s run is in after its last step against the trace's checkpoint of that step (its final
// state): what the steps do not compare (a batch normalization's moving statistics at level step). nullopt
// where they are the same or the trace holds no such checkpoint. The caller says whether the run's steps
// compared the same through the trace's end.
std::optional<FirstDivergence> final_state_difference(const std::string& trace_path, ReplaySide& side);
// The state `side`'s run is in after its last step against the trace's checkpoint of that step, where the
// trace holds one there that is not its final state (--checkpoint-every): nullopt where they are the same or
// there is none.
std::optional<FirstDivergence> checkpoint_difference(const std::string& trace_path, ReplaySide& side);

// Why configuration differences (cause.h's "key: a -> b") that no cause names left the steps compared alike:
// "train.epochs changes how many steps run, not what a step computes", "... changes nothing that was
// compared".
std::vector<std::string> unblamed_config_words(const std::vector<std::string>& differences);
// Which side of a comparison that matched has steps the other lacks, and why: none, the trace ends first, the
// replay's run ends first, the replay stopped at --to-step.
enum class Unmatched { none, trace_first, replay_run_end, replay_to_step };
// "the configuration differs from the recording's (DIFFERENCES), yet the N steps compared matched it: WHY":
// `why` the reasons the caller knows (forced choices that serve the recorded values), then those of
// unblamed_config_words(`unblamed`), then the steps one side lacks from step `stopped` on.
// `command` as it runs in the environment this process replayed in: each variable the environment
// differences (environment_differences) show set here, other than in the recording, in front
// ("TRAINRR_ISA=avx2 trainrr replay ..."), so that the command run elsewhere makes the difference the report
// shows.
std::string with_environment(const std::string& command, const std::vector<EnvDifference>& differences);

// The configuration differences ("seed: 7 -> 8") the forced choices serve the recorded values for, taken out
// of `differences`: a seed where the run got the recorded one (`seed_served`), the split's settings under a
// forced split, save where the first difference (`first`) is the split's own draw (a forced split serves the
// recorded rows, not the draw: another data.split draws otherwise, and a difference there is that key's).
// Such a difference changes nothing the run computes: it is reported, never blamed.
std::vector<std::string> take_served(std::vector<std::string>& differences, bool seed_served,
                                     bool split_forced, const FirstDivergence* first);

std::string config_matched_note(const std::vector<std::string>& differences, std::vector<std::string> why,
                                const std::vector<std::string>& unblamed, int64_t compared, int64_t stopped,
                                Unmatched unmatched);

Result<ReplaySide> make_replay_side(const std::string& trace_path, const RunConfig& config,
                                    const KernelRegistry& registry, ForceSet force,
                                    std::function<bool(const std::string&)> filter, ProbeLevel level,
                                    bool compare, int64_t from, Collective* collective = nullptr,
                                    DeviceBackend* device = nullptr);

// Re-executes step `step` of the trace both ways (every recorded choice forced under `recorded`, and `force`
// under `config`) from its recorded state and adds to `d` the first differing element at `d`'s own site, when
// that site is the first of those the replay compares to differ in the re-execution. `d`'s site and step,
// found by the comparison with the recording, never change: a re-execution that differs first elsewhere, or
// not at all, or whose recorded side does not reproduce the trace, adds no values and says so in `notes`.
// `recorded` runs on the recorded data, and on the recorded device: a run recorded on the GPU and replayed on
// the CPU gets its values only where this machine has that GPU (`recorded_device`, for tests only, stands in
// for it). Counts the steps run in `executed`.
// What the re-execution shows beside the values, for refine_cause: `recorded_itself`, where the recorded
// side (every recorded choice forced, those that cannot run here replaced) differs from the trace itself;
// `op_first`, the first op whose output differs between the two sides (every op probed), with each side's
// kernel there. `replayed_batch`: the batch the replay took in that step, which the side "as replayed" takes
// too (a first-ready loader would otherwise pick again, and the values would be of another batch).
// `replayed_kernels`: the kernel the replay ran at each site, which that side runs too where it was chosen
// free (an autotune would otherwise time again and may pick another).
void locate_element(const std::string& trace_path, ForceSet force, const RunConfig& recorded,
                    const RunConfig& config, const KernelRegistry& registry, int64_t step, FirstDivergence& d,
                    int64_t& executed, std::vector<std::string>& notes,
                    DeviceBackend* recorded_device = nullptr,
                    std::optional<FirstDivergence>* recorded_itself = nullptr,
                    std::optional<FirstDivergence>* op_first = nullptr,
                    std::optional<int64_t> replayed_batch = std::nullopt,
                    const std::map<std::string, std::string>* replayed_kernels = nullptr);

// The cause of `d` (classify(d, ci)) made to follow what locate_element's re-execution showed: below level
// op, a numeric or kernel cause becomes that of the first op whose output differs (`op_first`), which names
// its kernel; a configuration or data cause gives way to what differs on this machine when the recorded run,
// every recorded choice forced, differs by d's step on its own (`recorded_itself`), and a note says so.
// Returns whether it added that note.
bool refine_cause(Cause& cause, const FirstDivergence& d, const CauseInputs& ci,
                  const std::optional<FirstDivergence>& recorded_itself,
                  const std::optional<FirstDivergence>& op_first, std::vector<std::string>& notes);

// The error (exit 2) for a trace whose recorded kernel no machine can run at its site
// (ReplayHooks::kernel_refusal): the trace, then the step, the site and the kernel.
std::string kernel_refusal_message(const std::string& trace_path, const std::string& refusal);
// One note per forced site whose recorded kernel could not run here, naming what ran instead, and per site
// whose recorded accumulation order could not be forced.
void substitution_notes(const ReplayHooks& hooks, std::vector<std::string>& notes);
// A note when the replay runs on another device than the recorded run did (--set runtime.device=cpu).
std::optional<std::string> device_change_note(const trace::TraceHeader& h, const RunConfig& config);
// A note when `who` ("the trace", "A"), a trace written before batch normalization's moving statistics were
// probed, has a model with such a layer and probes that compare them: they are not compared.
std::optional<std::string> moving_statistics_note(const trace::TraceHeader& h, const std::string& who);
// Whether the rebuilt run's runtime.device can run here; the error (exit 3) says how to replay it on the CPU,
// or, where a --set asked for the GPU that the recording did not use, that the --set is what asks for it.
Status device_for_replay(const trace::TraceHeader& h, const RunConfig& config);

// This process's environment as a recording would describe it, for running `config`.
Result<std::vector<std::pair<std::string, std::string>>> current_environment(const RunConfig& config);

// The folder the recorded configuration's relative paths resolve against.
std::string config_folder(const trace::TraceHeader& header);

// Environment differences between a recording and this process (or another recording): those that can
// change a run's numbers. Whether a trainrr had the CUDA backend (cuda.backend) is not one: the device the
// run ran on is.
std::vector<EnvDifference> environment_differences(
    const std::vector<std::pair<std::string, std::string>>& recorded,
    const std::vector<std::pair<std::string, std::string>>& replayed);

}  // namespace trainrr
