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

namespace trainrr {

// The checkpoint a trace holds after `steps` steps, read with its tensors, or nullopt where it holds none
// (a trace cut before its end, one that does not end there). An error where it cannot be read.
Result<std::optional<TrainState>> final_checkpoint(const std::string& trace_path, int64_t steps);

// The first difference between two states (the tensors by name, bit for bit), as a divergence of kind
// "state", or nullopt where they are the same: the final states after step `step`, or (`initial`) the
// initial states before step 0 (phase "setup").
std::optional<FirstDivergence> state_difference(const std::vector<NamedTensor>& a,
                                                const std::vector<NamedTensor>& b, int64_t step,
                                                const std::string& name_a, const std::string& name_b,
                                                bool initial);

}  // namespace trainrr
