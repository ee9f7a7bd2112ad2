#include "tools/report_output.h"

#include <cstdio>

#include "engine/escape.h"
#include "replayer/report_file.h"
#include "replayer/report_html.h"
#include "tools/commands.h"
#include "tools/trace_text.h"

namespace trainrr::cli {

void add_report_options(CLI::App& cmd, ReportOutput& out) {
  cmd.add_flag("--json", out.json,
               "Print the report as JSON (stable keys: status, first_divergence, cause, ...); for a trace of "
               "one process only, not a run's folder");
  // Checked before any replay runs, so a long replay is not spent on a report that cannot be written.
  const CLI::Validator writable(
      [](std::string& path) -> std::string { return check_html_report_path(path).message; }, "FILE");
  cmd.add_option("--html", out.html,
                 "Also write a self-contained HTML report to this file (new, empty, or an earlier report, "
                 "which is replaced); for a trace of one process only, not a run's folder")
      ->check(writable);
}

Status emit_report(const DivergenceReport& report, const ReportOutput& out) {
  // The report quotes the trace (sites, kernels, environment values, paths): escaped for the terminal.
  const std::string text = out.json ? report_json(report) : printable(report_text(report));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  if (!out.html.empty()) {
    if (Status s = write_html_report(out.html, report_html(report)); !s) return s;
    if (!out.json) std::printf("report: %s\n", inline_text(out.html).c_str());
  }
  return {};
}

int exit_after_report(int exit_code, const std::optional<std::string>& damage) {
  if (!damage) return exit_code;
  print_error(*damage + "; the report compares what lies before it");
  return kBadInput;
}

}  // namespace trainrr::cli
