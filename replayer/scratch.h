#pragma once
// The private folder a replay writes its files to (the data sets a trace embeds). A trace is untrusted
// input: nothing in it names a file here. The folder is new (mkdtemp, mode 0700), its files get names that
// trainrr makes, each is created anew (never through a link planted in its place), and the folder goes
// with everything in it on every exit path: a return, an error, or SIGINT, SIGTERM, SIGHUP or SIGQUIT.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "engine/result.h"

namespace trainrr {

class ScratchDir {
 public:
  // A new folder under $TMPDIR (else /tmp), named PREFIX-XXXXXX.
  static Result<ScratchDir> create(std::string_view prefix);
  ScratchDir(ScratchDir&& other) noexcept;
  ScratchDir& operator=(ScratchDir&&) = delete;
  ScratchDir(const ScratchDir&) = delete;
  ~ScratchDir();  // removes the folder and what it holds

  const std::string& path() const { return path_; }

  // Writes `bytes` to a new file `name` in the folder and returns its path. `name` is trainrr's own
  // ("dataset-0.csv"): one path component of letters, digits, '-', '_' and '.', not starting with '.'.
  // Anything already there under that name (a file, a link) is an error; it is never followed.
  Result<std::string> write_file(std::string_view name, std::span<const uint8_t> bytes);

 private:
  ScratchDir(std::string path, int fd, int slot) : path_(std::move(path)), fd_(fd), slot_(slot) {}
  std::string path_;
  int fd_ = -1;    // the folder, opened: files are created relative to it, whatever happens to the path
  int slot_ = -1;  // its entry in the table the signal handler cleans up
};

// Whether `name` is a file name write_file accepts.
bool is_scratch_file_name(std::string_view name);

}  // namespace trainrr
