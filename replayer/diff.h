#pragma once
// Two recorded runs compared without re-running either: configuration and environment first, then the
// first divergence by (step, kind, site, occurrence) alignment, then how far the runs drift afterwards.

#include <optional>
#include <string>
#include <vector>

#include "replayer/data_reach.h"
#include "replayer/divergence.h"
#include "traces/trace.h"

namespace trainrr {

struct DiffResult {
  int exit_code = 0;  // 0 identical, 1 diverged, 2 bad input
  std::string error;
  DivergenceReport report;
  // What makes B a different run rather than another recording of A's: configuration keys, data files.
  std::vector<std::string> config_differences;
  std::string data_difference;
  std::optional<std::string> damage;  // a trace is damaged there: the command exits 2 after its report
};

DiffResult diff_traces(const std::string& a_path, const std::string& b_path);

// Two recorded events of the same kind and site, compared as diff compares them: true, with `d` filled in
// (kind, phase, site, detail), where they differ.
bool events_differ(const trace::Event& a, const trace::Event& b, FirstDivergence& d);

// Where the rows that differ between the data of A and B are first read, as B's trace at `b_path` (a run
// folder's: its rank 0's) schedules them, with both copies of the data at hand (embedded, or at their
// recorded paths as recorded); nullopt where they are not, or cannot be compared row by row.
std::optional<DataReach> recorded_data_reach(const trace::TraceHeader& a, const trace::TraceHeader& b,
                                             const std::string& b_path);

// What two recordings were asked to run, from their headers: the configuration keys whose values differ
// (cause.h's config_differences(), a drawn seed taken as the one used), with A's layer names in `layers`
// when given; and the data files whose recorded digests differ, in words ("" when none does).
std::vector<std::string> recorded_config_differences(const trace::TraceHeader& a, const trace::TraceHeader& b,
                                                     std::vector<std::string>* layers = nullptr,
                                                     std::vector<std::string>* layers_b = nullptr);
// `changed`, when given, gets the trace's names of the data sets that differ ("data", "features", "labels").
// A file whose copies differ in their bytes but hold the same values as the runs read them
// (data_difference.h) is no difference: it goes to `same_values`, when given, in words, and nowhere else.
std::string recorded_data_difference(const trace::TraceHeader& a, const trace::TraceHeader& b,
                                     std::vector<std::string>* changed = nullptr,
                                     std::vector<std::string>* same_values = nullptr);

}  // namespace trainrr
