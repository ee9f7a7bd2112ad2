#include "tools/report_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "replayer/report_html.h"
#include "tools/commands.h"
#include "tools/trace_text.h"

namespace trainrr::cli {
namespace fs = std::filesystem;

void add_report_options(CLI::App& cmd, ReportOutput& out) {
  cmd.add_flag("--json", out.json,
               "Print the report as JSON (stable keys: status, first_divergence, cause, ...)");
  // Checked before any replay runs, so a long replay is not spent on a report that cannot be written.
  const CLI::Validator writable(
      [](std::string& path) -> std::string {
        if (path.empty()) return "--html needs a file path, got an empty one";
        std::error_code ec;
        const fs::file_type type = fs::status(path, ec).type();
        if (type == fs::file_type::directory) return path + " is a directory; --html needs a file path";
        // An existing report is rewritten in place: it is the file, not its folder, that must be writable.
        // The effective IDs decide (AT_EACCESS), as they decide the open that writes the report.
        if (type != fs::file_type::not_found && type != fs::file_type::none) {
          if (::faccessat(AT_FDCWD, path.c_str(), W_OK, AT_EACCESS) != 0)
            return "cannot write " + path + ": " + std::strerror(errno);
        } else {
          fs::path folder = fs::path(path).parent_path();
          if (folder.empty()) folder = ".";
          if (!fs::is_directory(folder, ec)) return "folder " + folder.string() + " does not exist";
          if (::faccessat(AT_FDCWD, folder.c_str(), W_OK | X_OK, AT_EACCESS) != 0)
            return "cannot create a file in " + folder.string() + ": " + std::strerror(errno);
        }
        // A slip of the keyboard (--html run.trr) must not destroy a trace, a configuration or data.
        if (type == fs::file_type::regular && fs::file_size(path, ec) > 0) {
          char head[15] = {};
          std::ifstream(path, std::ios::binary).read(head, sizeof head);
          if (std::string_view(head, sizeof head) != "<!doctype html>")
            return path + " exists and is not an HTML report: refusing to overwrite it";
        }
        return {};
      },
      "FILE");
  cmd.add_option("--html", out.html, "Also write a self-contained HTML report to this file")->check(writable);
}

Status emit_report(const DivergenceReport& report, const ReportOutput& out) {
  // The report quotes the trace (sites, kernels, environment values, paths): escaped for the terminal.
  const std::string text = out.json ? report_json(report) : printable(report_text(report));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  if (!out.html.empty()) {
    std::ofstream f(out.html, std::ios::binary);
    f << report_html(report);
    if (!f) return Error{out.html + ": cannot write the HTML report: " + std::strerror(errno)};
    if (!out.json) std::printf("report: %s\n", out.html.c_str());
  }
  return {};
}

int exit_after_report(int exit_code, const std::optional<std::string>& damage) {
  if (!damage) return exit_code;
  print_error(*damage + "; the report compares what lies before it");
  return kBadInput;
}

}  // namespace trainrr::cli
