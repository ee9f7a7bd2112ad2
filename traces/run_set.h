#pragma once
// How the traces of a data-parallel run sit on disk: `trainrr record -o run.trr` under `mpirun -n N` makes
// run.trr a folder holding rank0.trr .. rank{N-1}.trr, one trace per rank, each with the run's id, its rank
// and the rank count in its header. Every command takes the run by the folder's name.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "engine/result.h"
#include "traces/trace.h"

namespace trainrr::trace {

// FOLDER/rankR.trr
std::string rank_trace_path(const std::string& folder, int rank);

struct RunSet {
  std::string folder;
  std::string run_id;
  int world_size = 0;
  std::vector<std::string> paths;    // by rank
  std::vector<TraceHeader> headers;  // by rank
};

// Whether `path` names a folder (a run of several ranks) rather than a trace file.
bool is_run_folder(const std::string& path);
// Whether the folder holds any rank trace (rank0.trr, rank1.trr, ...).
bool holds_rank_traces(const std::string& folder);

// The ranks of the run in `folder`, every one present and all of one run: an error names a missing rank, a
// trace of another run (its run id), a trace that is not a rank of a run, or an unreadable one.
Result<RunSet> open_run(const std::string& folder);

// A recording into a folder that holds an earlier run writes each rank's new trace beside the earlier one as
// .trainrr-PID-N.trr.part (traces/trace_writer.cc) and renames it over it when the run ends. Its PID, when
// `name` is such a name.
std::optional<pid_t> pending_trace_pid(const std::string& name);
// Those of the new traces in `folder` that a killed recording left (a regular file that no writer holds,
// whose process is gone): each holds the steps its rank completed. By name, sorted; a live recording's are
// not.
std::vector<std::string> killed_recording_traces(const std::string& folder);

// An error when `header` is one rank of a data-parallel run: `what` (replay, diff, ...) needs every rank.
Status refuse_rank_alone(const TraceHeader& header, const std::string& path, const std::string& what);

}  // namespace trainrr::trace
