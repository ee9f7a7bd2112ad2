#pragma once
// Which code OpenBLAS runs. OpenBLAS picks its code for the CPU when the process loads it (Cooperlake,
// Haswell, Prescott, ...), so two machines can run the same kernel id through different machine code and
// round differently. OPENBLAS_CORETYPE names the code to use instead, and is read only at load: these
// functions restart the process once with it set, when they must, and do not return then.

#include <string>
#include <vector>

#include "traces/trace.h"

namespace trainrr::cli {

// Where OPENBLAS_CORETYPE names code this CPU cannot run, OpenBLAS is not among the kernels
// (openblas_runs_here) and the functions below return the note that says so, restarting nothing.

// For a replay that forces the recorded kernels: runs the recording's OpenBLAS code when this CPU (and
// TRAINRR_ISA) allows it, else keeps OpenBLAS within TRAINRR_ISA as keep_openblas_within_isa() does; a
// recording made on a GPU, whose matmuls OpenBLAS did not compute, gets the latter.
// Returns the notes for the report.
std::vector<std::string> use_recorded_openblas_core(const trace::TraceHeader& recorded);

// For train, record and a replay that does not force the kernels: under a TRAINRR_ISA lower than this CPU's,
// OpenBLAS must not run code above it either, so that the run is the one another CPU would make. Restarts
// with the best code within TRAINRR_ISA (Haswell for avx2, Prescott for generic) when OpenBLAS's own pick
// needs more. Returns notes (what a restart did, in the restarted process).
std::vector<std::string> keep_openblas_within_isa();

// For train and record: when OpenBLAS runs code below this CPU's instruction set because it does not know
// the CPU, a note saying so (its runs round differently from OpenBLAS's on CPUs it knows, and are slower).
std::vector<std::string> openblas_fallback_notes();

}  // namespace trainrr::cli
