#pragma once
// The folder `trainrr export` writes. An export is written whole into a staging folder beside DIR
// (DIR.partial-XXXXXX), then renamed into place: a failed or interrupted export leaves nothing, and a new
// one keeps no stale file of an earlier one. DIR may be absent, empty or an earlier export that holds nothing
// but what an export writes (its manifest.json and the .npy files the manifest lists); anything else in it
// would be lost, so it is refused, as is a DIR that holds the trace being read.

#include <filesystem>
#include <set>
#include <string>

#include "engine/result.h"

namespace trainrr::cli {

// The .npy files a manifest.json lists (its tensors' "file" entries); an error when the text is not a
// manifest that trainrr export writes.
Result<std::set<std::string>> manifest_files(const std::string& manifest_text);

// Whether `target` may be replaced by an export of `trace`: absent (in a folder that exists), an empty
// folder, or an earlier export holding only its manifest.json and the files it lists, and not the trace.
Status check_export_target(const std::filesystem::path& target, const std::string& trace);

// The staging folder of one export. While it exists, SIGINT, SIGTERM and SIGHUP are noted rather than
// fatal, so that the export stops before its next file (interrupted() says which came) and the folder is
// removed on the way out; a second such signal ends the process at once. SIGKILL cannot be caught: the
// folder it leaves is found by the next export to the same DIR.
class ExportStaging {
 public:
  // Creates DIR.partial-XXXXXX beside `target` (whose folder must exist), with the permissions of the earlier
  // export at `target` (put_in_place gives it them exactly) or else those mkdir would give it, and a marker
  // in it that names this host and process. A DIR.partial-* that an export killed earlier left (its marker
  // names this host and a process that is gone, and it holds nothing but what an export writes) is removed,
  // with a note on stderr; any other DIR.partial-* is named in a note and kept.
  static Result<ExportStaging> create(const std::filesystem::path& target);
  ExportStaging(ExportStaging&& other) noexcept;
  ExportStaging& operator=(ExportStaging&&) = delete;
  ExportStaging(const ExportStaging&) = delete;
  ~ExportStaging();  // removes the folder unless it was put in place, and restores the signal handlers

  const std::filesystem::path& path() const { return path_; }
  // The signal that interrupted the export (SIGINT, SIGTERM or SIGHUP), else 0.
  static int interrupted();
  // Replaces `target` (absent, or passed by check_export_target for `trace`) with the staging folder, which
  // takes the earlier export's permissions. The earlier export is checked again once moved aside: a file put
  // there since is kept, and the export is refused.
  Status put_in_place(const std::filesystem::path& target, const std::string& trace);

 private:
  explicit ExportStaging(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;  // empty once put in place
  bool moved_ = false;          // moved from: the other owns the folder and the handlers
};

}  // namespace trainrr::cli
