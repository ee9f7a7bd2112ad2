#pragma once
// The verbs on a data-parallel run (a folder of rank traces, traces/run_set.h), and the refusal of one rank's
// trace where a verb needs every rank.

#include <string>
#include <vector>

#include "replayer/force.h"

namespace trainrr::cli {

// -1 when `path` is neither a run folder nor a rank trace taken alone (the verb goes on as for one trace);
// otherwise the verb's exit code, its output printed.
int replay_run_folder(const std::string& path, const ForceSet& force, const std::vector<std::string>& overrides,
                      int64_t to_step);
int diff_run_folders(const std::string& a, const std::string& b);
int show_run_folder(const std::string& path);
// Notes, one per recording, on the rank traces that recordings killed over an earlier run left in `folder`
// (trace::killed_recording_traces): their ranks, run id and steps, which run the folder's rank traces are,
// and how to read them. None where there are none.
std::vector<std::string> killed_recording_notes(const std::string& folder);
// An exit code (2) when `path` is one rank of a run and `what` needs every rank, or a run folder that `what`
// does not take; -1 otherwise.
int refuse_for(const std::string& path, const std::string& what);
// An exit code (2) when `path` is a run's folder and `options` (what the user gave that runs of one process
// take and runs of several do not yet: "--json", "--html", ...) is not empty; -1 otherwise.
int refuse_options_for_run(const std::string& path, const std::vector<std::string>& options);

}  // namespace trainrr::cli
