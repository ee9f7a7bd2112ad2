#pragma once
// The state a run ends in, compared once, at its end: a recording's final checkpoint holds every tensor of
// the run (the parameters, a batch normalization's moving statistics, the optimizer's slots), and the steps'
// comparisons do not reach all of them (at level step, the moving statistics not at all). Two runs whose
// every step compared the same may still end with other models.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/hooks.h"
#include "engine/result.h"
#include "replayer/divergence.h"
#include "traces/trace.h"

namespace trainrr::trace {
class TraceReader;
}  // namespace trainrr::trace

namespace trainrr {

// A trace's checkpoints read with their tensors, one after another, through one reader opened at the first.
class CheckpointReader {
 public:
  explicit CheckpointReader(std::string trace_path);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  // The checkpoint of `steps` steps at byte `offset`, or nullopt where the message there is no checkpoint of
  // that step or the trace cannot be read there.
  std::optional<TrainState> read(uint64_t offset, int64_t steps);

 private:
  std::string path_;
  std::unique_ptr<trace::TraceReader> reader_;
  bool unreadable_ = false;
};

// Step -> byte offset of every state the trace at `trace_path` holds: the initial one (the message after the
// header), those of --checkpoint-every, and the final one. From `read`'s footer where that reader has reached
// it, else by scanning the file's messages (a trace cut short keeps the checkpoints before the cut). Empty
// where the trace cannot be read.
std::map<int64_t, uint64_t> state_offsets(const std::string& trace_path,
                                          const trace::TraceReader* read = nullptr);

// The checkpoint after `steps` steps among `index` (a footer's list, or the message after the header for the
// initial state), read with its tensors, or nullopt where the index holds none of that step or the message
// there is no checkpoint of it. The caller's reader has read the index already: the file is not scanned.
std::optional<TrainState> checkpoint_at(const std::string& trace_path,
                                        const std::vector<trace::CheckpointRef>& index, int64_t steps);

// Whether two tensors hold the same shape and bits.
bool same_tensor_bits(const Tensor& a, const Tensor& b);

// Where in the run a state is: before step 0 (its initial checkpoint), after a step that is not the last (a
// checkpoint of --checkpoint-every, what a replay --from-step resumes from), or after the last step.
enum class StatePlace { initial, checkpoint, end };

// The words a state divergence's detail holds where the two states hold the same tensors and scalars but not
// the same place in the run (the epoch, the loader's order and cursor, the random streams' offsets): the
// recorded choices fix those, so two runs whose steps compared the same cannot differ there.
inline constexpr std::string_view kOtherPlaceInTheRun = "which the recorded choices fix";

// The words a state divergence's detail holds where only the epoch's running sums differ, every step compared
// the same since the replay resumed from a recorded checkpoint in that epoch: the sums came from there.
inline constexpr std::string_view kResumedSums = "which the replay took from the checkpoint it resumed from";

// The first words of a report's line for a state that differs ("diverged in the checkpoint at step 5, after
// step 4"): where in the run it is, as `d` (kind "state") places it.
std::string state_headline(const FirstDivergence& d);

// The first difference between two states (the tensors by name, bit for bit, then the scalars, then the
// place in the run), as a divergence of kind "state", or nullopt where they are the same: the states after
// step `last_step` (phase "checkpoint" or "final state"), or the initial states before step 0 (phase
// "setup"). `same_before`: the step before which the last state compared was the same (0: the initial
// state), which tells the steps that made this one differ; nullopt where none was compared. `resumed`: set
// where that state is the checkpoint a replay resumed from, taken as recorded rather than compared.
std::optional<FirstDivergence> state_difference(const TrainState& a, const TrainState& b, int64_t last_step,
                                                const std::string& name_a, const std::string& name_b,
                                                StatePlace place,
                                                std::optional<int64_t> same_before = std::nullopt,
                                                bool resumed = false);

}  // namespace trainrr
