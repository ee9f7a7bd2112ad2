#pragma once
// Appends a trace file: a header, then one packed Cap'n Proto message per step (written to the OS with one
// system call, so a killed process loses at most the step in progress), checkpoints (synced to disk), and a
// footer (synced). Names (sites, streams, parameter and metric names) are interned: each is written once.
//
// One writer per path (traces/trace_lock.h): the writer holds a lock on its file from creation to close. An
// earlier trace at the path is replaced, never rewritten: the new file, header written, is renamed over it,
// so a reader that has the earlier trace open reads it to its end unharmed.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/result.h"
#include "traces/trace.h"

namespace trainrr::trace {

class TraceWriter {
 public:
  // Writes the header to a new file beside `path` (symbolic links followed) and renames it to `path`. Where
  // `path` holds an earlier trace (a file that is not empty), the new one is renamed over it only when it is
  // finished: a recording killed before then leaves the earlier trace as it was, and the new one beside it
  // (pending_name()). Refuses, before anything is written, a path that another live writer holds: the Error
  // names the path and that writer's process id. The new file keeps the permissions of the one it
  // replaces.
  static Result<std::unique_ptr<TraceWriter>> create(const std::string& path, const TraceHeader& header);
  // Closes the file, which frees the path for another writer; without finish() the trace reads as "did not
  // end cleanly".
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Step indices must strictly increase.
  Status write_step(const TraceStep& step);
  Status write_epoch(const TraceEpoch& epoch);
  // Tensors are zstd-compressed; fdatasync follows, so a checkpoint on disk is a checkpoint one can resume.
  Status write_checkpoint(const TrainState& state);
  // Writes the footer with this writer's own counts and checkpoint index, syncs and closes.
  Status finish(const TraceFooter& footer);

  uint64_t bytes_written() const { return offset_; }
  // The new trace's name in the trace's folder while it waits to replace an earlier trace; "" otherwise.
  // Where the path is a link to a trace in another folder, its path in that folder.
  std::string pending_name() const {
    return replaces_.empty() ? std::string() : folder_.empty() ? unclaimed_ : folder_ + "/" + unclaimed_;
  }
  // finish() found the trace it wrote removed or moved away while it was recorded (its error says so).
  bool gone() const { return gone_; }
  const std::string& path() const { return path_; }

  struct Interner;  // name -> id; defined in trace_writer.cc

 private:
  TraceWriter(std::string path, int fd, int dir_fd, std::string unclaimed);
  Status check_usable() const;
  Status fail(const std::string& what);
  Status claim(const std::string& name);
  void sync_name();

  std::string path_;
  int fd_ = -1;
  int dir_fd_ = -1;        // the folder the trace is in
  std::string unclaimed_;  // the file's name in that folder until it is renamed to the trace's; "" after
  std::string replaces_;   // the trace's name in that folder, where an earlier trace waits to be replaced
  std::string folder_;     // that folder, where it is not the path's own (the path is a link to another)
  std::string target_;     // the file the path names, links followed
  int earlier_fd_ = -1;    // that earlier trace, locked as this writer's until the new one replaces it
  bool name_synced_ = false;
  uint64_t offset_ = 0;  // bytes written so far: the offset of the next message
  bool failed_ = false;
  bool finished_ = false;
  bool gone_ = false;  // finish found the file written removed or moved away
  int64_t last_step_ = -1;
  int64_t step_count_ = 0;
  uint64_t event_count_ = 0;
  std::vector<CheckpointRef> checkpoints_;
  // From the header: what a step's kernel records must keep to.
  ProbeLevel level_ = ProbeLevel::step;
  bool kernels_recorded_ = false;
  std::unique_ptr<Interner> names_;
};

}  // namespace trainrr::trace
