#pragma once
// The HTML page of a replay, diff or bisect report: self-contained, for people to look at.

#include <string>

#include "replayer/divergence.h"

namespace trainrr {

std::string report_html(const DivergenceReport& r);

// Where an HTML report may be written (--html FILE of replay, diff and bisect; Report.save_html in Python): a
// new file in a folder that exists and can be written, or an empty file or an earlier report (a file that
// starts with "<!doctype html>"), which it replaces. A slip of the keyboard (--html run.trr) must not destroy
// a trace, a configuration or data: any other file is refused.
enum class ReportPathProblem { none, empty, folder, no_folder, cannot_write, not_a_report };
struct ReportPathCheck {
  ReportPathProblem problem = ReportPathProblem::none;
  std::string message;  // names the path; empty when there is no problem
};
ReportPathCheck check_html_report_path(const std::string& path);

}  // namespace trainrr
