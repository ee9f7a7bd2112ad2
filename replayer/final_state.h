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

// The first difference between two states (the tensors by name, bit for bit), as a divergence of kind
// "state", or nullopt where they are the same: the final states after step `step`, or (`initial`) the
// initial states before step 0 (phase "setup").
std::optional<FirstDivergence> state_difference(const std::vector<NamedTensor>& a,
                                                const std::vector<NamedTensor>& b, int64_t step,
                                                const std::string& name_a, const std::string& name_b,
                                                bool initial);

}  // namespace trainrr
