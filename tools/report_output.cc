#include "tools/report_output.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace trainrr::cli {
namespace fs = std::filesystem;

void add_report_options(CLI::App& cmd, ReportOutput& out) {
  cmd.add_flag("--json", out.json,
               "Print the report as JSON (stable keys: status, first_divergence, cause, ...)");
  // Checked before any replay runs, so a long replay is not spent on a report that cannot be written.
  const CLI::Validator writable(
      [](std::string& path) -> std::string {
        fs::path folder = fs::path(path).parent_path();
        if (folder.empty()) folder = ".";
        if (!fs::is_directory(folder)) return "folder " + folder.string() + " does not exist";
        if (::access(folder.c_str(), W_OK) != 0) return "cannot write in " + folder.string();
        // A slip of the keyboard (--html run.trr) must not destroy a trace, a configuration or data.
        std::error_code ec;
        if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) > 0) {
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
  const std::string text = out.json ? report_json(report) : report_text(report);
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

}  // namespace trainrr::cli
