#pragma once
// Two recorded runs compared without re-running either: configuration and environment first, then the
// first divergence by (step, kind, site, occurrence) alignment, then how far the runs drift afterwards.

#include <optional>
#include <string>

#include "replayer/divergence.h"

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

}  // namespace trainrr
