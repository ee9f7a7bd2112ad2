#pragma once
// How replay, diff and bisect print their reports: text (answer first), --json, --html FILE.

#include <CLI/CLI.hpp>
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

}  // namespace trainrr::cli
