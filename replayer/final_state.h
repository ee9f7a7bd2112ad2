#pragma once
// The state a run ends in, compared once, at its end: a recording's final checkpoint holds every tensor of
// the run (the parameters, a batch normalization's moving statistics, the optimizer's slots), and the steps'
// comparisons do not reach all of them (at level step, the moving statistics not at all). Two runs whose
// every step compared the same may still end with other models.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/hooks.h"
#include "engine/result.h"
#include "replayer/divergence.h"
#include "traces/trace.h"

namespace trainrr {

// The checkpoint after `steps` steps among `index` (a footer's list, or the message after the header for the
// initial state), read with its tensors, or nullopt where the index holds none of that step or the message
// there is no checkpoint of it. The caller's reader has read the index already: the file is not scanned.
Result<std::optional<TrainState>> checkpoint_at(const std::string& trace_path,
                                                const std::vector<trace::CheckpointRef>& index,
                                                int64_t steps);

// Where in the run a state is: before step 0 (its initial checkpoint), after a step that is not the last (a
// checkpoint of --checkpoint-every, what a replay --from-step resumes from), or after the last step.
enum class StatePlace { initial, checkpoint, end };

// The words a state divergence's detail holds where the two states hold the same tensors and scalars but not
// the same place in the run (the epoch, the loader's order and cursor, the random streams' offsets): the
// recorded choices fix those, so two runs whose steps compared the same cannot differ there.
inline constexpr std::string_view kOtherPlaceInTheRun = "which the recorded choices fix";

// The first difference between two states (the tensors by name, bit for bit, then the scalars, then the
// place in the run), as a divergence of kind "state", or nullopt where they are the same: the states after
// step `last_step` (phase "checkpoint" or "final state"), or the initial states before step 0 (phase
// "setup").
std::optional<FirstDivergence> state_difference(const TrainState& a, const TrainState& b, int64_t last_step,
                                                const std::string& name_a, const std::string& name_b,
                                                StatePlace place);

}  // namespace trainrr
