#pragma once
// The file an HTML report is written to (--html FILE of replay, diff and bisect; Report.save_html in
// Python): which paths may take one, and how it is written there.

#include <string>
#include <string_view>

#include "engine/result.h"

namespace trainrr {

// How every report trainrr writes begins, to the byte: the generator's name comes before anything that
// differs from one report to another, so that an earlier report is told from any other page by its first
// bytes alone.
inline constexpr std::string_view kReportStart =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"generator\" "
    "content=\"trainrr";

// Where an HTML report may be written: a new file in a folder that exists and can be written, or an empty
// file or an earlier report (a file that starts with kReportStart), which it replaces. A slip of the keyboard
// (--html run.trr, --html notes.html) must not destroy a trace, a configuration, data or a page of someone
// else's: any other file is refused. A symbolic link is followed to the file it names, which must exist.
enum class ReportPathProblem { none, empty, folder, no_folder, cannot_write, not_a_report, dangling_link };
struct ReportPathCheck {
  ReportPathProblem problem = ReportPathProblem::none;
  std::string message;  // names the path; empty when there is no problem
};
ReportPathCheck check_html_report_path(const std::string& path);

// Writes `page` to `path` (which check_html_report_path passed). The page goes to a new file beside the
// report (symbolic links followed), which is renamed over it once it is whole, with the permissions of the
// file it replaces: a failed write (a full disk) leaves the earlier report as it was and no other file. Two
// cases cannot be done so and are written in place: a report in a folder that takes no new file (the
// report itself can be written), and what is not a regular file (/dev/stdout, a pipe).
Status write_html_report(const std::string& path, std::string_view page);

}  // namespace trainrr
