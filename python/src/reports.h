#pragma once
// replay, diff and bisect from Python: the same calls as the commands make, returning the report.

#include <optional>
#include <string>
#include <vector>

#include "replayer/divergence.h"

namespace trainrr::py {

struct Report {
  DivergenceReport report;
  int exit_code = 0;  // as the command would exit: 0 reproduced/identical, 1 diverged, 2 damaged trace
  std::optional<std::string> damage;
  std::string log;  // bisect: the lines the command prints as it goes (stages, result), before the report

  std::string text() const;  // the report as the command prints it (after `log`)
  std::string json() const;  // as --json prints it
  std::string html() const;  // as --html writes it
};

struct ReplaySettings {
  std::string trace;
  std::string force = "all";
  std::vector<std::string> overrides;
  std::string data;
  bool allow_data_change = false;
  int64_t from_step = 0;
  int64_t to_step = -1;
  bool keep_going = false;
  bool element_detail = true;
};

// Errors (a trace that cannot be read, a replay that cannot run here) raise trainrr.TraceError. With
// `catch_sigint` (Python's main thread), Ctrl-C stops a replay or bisect before its next step and raises
// KeyboardInterrupt; nothing is written but the scratch copies of embedded data, which go with it.
Report replay_trace(const ReplaySettings& settings, bool catch_sigint);
Report diff_traces(const std::string& a, const std::string& b);
Report bisect_trace(const std::string& trace, const std::string& against,
                    const std::vector<std::string>& overrides, const std::string& data, bool catch_sigint);

}  // namespace trainrr::py
