#pragma once
// bisect reads a trace by its path more than once (its header, its steps, a checkpoint, the steps
// again for each trial): another file put at the path meanwhile (a recording that finished there) would be
// read beside the first, and the answer mix the two. The file at the path is pinned by its identity when the
// command starts and asked for again before its answer is given.

#include <sys/types.h>

#include <optional>
#include <string>

namespace trainrr::cli {

class PinnedTrace {
 public:
  explicit PinnedTrace(std::string path);
  // Empty while the file at the path is the one that was there when this was made (or there was none to
  // pin, or none is there now: a read after it was moved or removed fails and says so); else the error that
  // `verb` gives instead of its answer.
  std::string replaced(const std::string& verb) const;

 private:
  std::string path_;
  std::optional<std::pair<dev_t, ino_t>> identity_;
};

}  // namespace trainrr::cli
