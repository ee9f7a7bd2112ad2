#pragma once
// Serving a recording's OpenBLAS code back. OpenBLAS picks its code for the CPU when the process loads it
// (Cooperlake, Haswell, Prescott, ...), so two machines can run the same kernel id through different machine
// code and round differently. A replay that forces the recorded kernels restarts itself once with
// OPENBLAS_CORETYPE naming the recording's code, when this CPU can run it.

#include <string>
#include <vector>

#include "traces/trace.h"

namespace trainrr::cli {

// Call before anything else runs in a replay that forces the recorded kernels. When the recording's
// OpenBLAS ran other code than this process's and this CPU can run it, re-executes this process with
// OPENBLAS_CORETYPE set and does not return. Otherwise returns the notes for the report: what the restart
// did (in the restarted process), or why this process's OpenBLAS code differs from the recording's.
std::vector<std::string> use_recorded_openblas_core(const trace::TraceHeader& recorded);

}  // namespace trainrr::cli
