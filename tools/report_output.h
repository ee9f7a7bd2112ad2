#pragma once
// How replay, diff and bisect print their reports: text (answer first), --json, --html FILE.

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "engine/result.h"
#include "replayer/divergence.h"

namespace trainrr::cli {

struct ReportOutput {
  bool json = false;
  std::string html;
};

void add_report_options(CLI::App& cmd, ReportOutput& out);
Status emit_report(const DivergenceReport& report, const ReportOutput& out);
// The exit code once the report is out: 2 when the trace is damaged (what the report compared stops before
// the damage, which is named on stderr), else `exit_code`.
int exit_after_report(int exit_code, const std::optional<std::string>& damage);

}  // namespace trainrr::cli
