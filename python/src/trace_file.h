#pragma once
// trainrr.open(path): a trace's header, steps, losses and checkpoints for Python. Messages are described in
// the JSON `trainrr dump --json` prints (tools/trace_text.h), so a script sees the same keys either way.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "traces/trace_reader.h"

namespace trainrr::py {

// One message of a trace, as dump's JSON: a step is its beginning, its events and its end (absent for a
// message of events after the last step).
struct MessageJson {
  std::string kind;  // step | epoch | checkpoint | footer
  std::string json;
  std::vector<std::string> events;  // step
  std::string end;                  // step: its end, "" when it has none
};

struct TraceContents {
  std::vector<MessageJson> messages;
  std::vector<double> losses;                // per completed step
  std::optional<std::string> stop;           // why reading stopped before the end of the file
  bool stop_truncated = false;               // a cut (a killed recording), else damage
  std::vector<std::string> notes;            // the reader's notes (still being recorded, skipped kinds)
};

class TraceFile {
 public:
  explicit TraceFile(std::string path);  // raises TraceError
  const std::string& path() const { return path_; }
  const trace::TraceHeader& header() const { return reader_->header(); }
  std::string header_json() const;
  TraceContents read(bool messages);
  std::vector<int64_t> checkpoint_steps();
  // The checkpoint taken after `step` steps (0: the initial state); raises TraceError when there is none.
  trace::TraceCheckpoint checkpoint(int64_t step);

 private:
  std::string path_;
  std::unique_ptr<trace::TraceReader> reader_;
};

}  // namespace trainrr::py
