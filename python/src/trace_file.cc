#include "python/src/trace_file.h"

#include <pybind11/pybind11.h>

#include <variant>

#include "python/src/errors.h"
#include "tools/trace_text.h"

namespace trainrr::py {

namespace pyb = pybind11;

TraceFile::TraceFile(std::string path) : path_(std::move(path)) {
  pyb::gil_scoped_release released;
  // Its checkpoints are read from it, its embedded data never.
  trace::ReaderLimits limits = trace::without_payloads();
  limits.tensor_values = true;
  auto reader = trace::TraceReader::open(path_, limits);
  if (!reader) raise(ErrorKind::trace, reader.error().message);
  reader_ = std::move(reader).value();
}

std::string TraceFile::header_json() const { return cli::header_json(reader_->header()); }

TraceContents TraceFile::read(bool messages) {
  pyb::gil_scoped_release released;
  // Each read starts over at the first message of the file open() read the header from, as it is now (grown,
  // when it was still being recorded): never another file that a recording since put at its path, whose
  // steps would then be read under this one's header. A checkpoint's message gives its tensors' digests: they
  // are decompressed only for the messages.
  trace::ReaderLimits limits = trace::without_payloads();
  limits.tensor_values = messages;
  auto reader = trace::TraceReader::reopen(*reader_, limits);
  if (!reader) raise(ErrorKind::trace, reader.error().message);
  TraceContents out;
  if (const auto& live = (*reader)->still_recording()) out.notes.push_back(*live);
  uint64_t end = (*reader)->header_size();  // where the last message read ends
  while (true) {
    auto record = (*reader)->next();
    if (!record) {
      out.stop = record.error().message;
      out.stop_truncated = (*reader)->stopped() && (*reader)->stopped()->truncated;
      break;
    }
    if (!*record) {
      // The file ends after a whole message, with no footer: what a recording killed between two messages
      // leaves, cut there (one still being recorded is not: its note says so).
      if (!(*reader)->ended_cleanly() && !(*reader)->still_recording()) {
        out.stop = path_ + ": the file ends at byte " + std::to_string(end) +
                   " after a complete message, with no footer (the recording was killed or crashed)";
        out.stop_truncated = true;
      }
      break;
    }
    const trace::TraceRecord& r = **record;
    end = r.offset + r.size;
    if (const auto* step = std::get_if<trace::TraceStep>(&r.value)) {
      if (step->end) out.losses.push_back(step->end->loss);
      if (!messages) continue;
      MessageJson m{"step", cli::step_begin_json(*step, r.offset), {}, ""};
      m.events.reserve(step->events.size());
      for (const trace::Event& e : step->events) m.events.push_back(cli::event_json(step->index, e));
      if (step->end) m.end = cli::step_end_json(*step);
      out.messages.push_back(std::move(m));
    } else if (!messages) {
      continue;
    } else if (const auto* epoch = std::get_if<trace::TraceEpoch>(&r.value)) {
      out.messages.push_back({"epoch", cli::epoch_json(*epoch, r.offset), {}, ""});
    } else if (const auto* checkpoint = std::get_if<trace::TraceCheckpoint>(&r.value)) {
      out.messages.push_back({"checkpoint", cli::checkpoint_json(*checkpoint, r.offset), {}, ""});
    } else if (const auto* footer = std::get_if<trace::TraceFooter>(&r.value)) {
      out.messages.push_back({"footer", cli::footer_json(*footer, r.offset), {}, ""});
    }
  }
  for (const std::string& note : (*reader)->notes()) out.notes.push_back(note);
  return out;
}

namespace {
// The checkpoints the trace holds are those it can be read to from its start, as steps() holds the steps: one
// past damage is not vouched for by the messages before it, and replay and export refuse it.
std::vector<int64_t> readable_checkpoints(const trace::TraceReader& opened) {
  auto reader = trace::TraceReader::reopen(opened, trace::without_payloads());
  if (!reader) raise(ErrorKind::trace, reader.error().message);
  std::vector<int64_t> steps;
  for (;;) {
    auto record = (*reader)->next();
    if (!record || !*record) break;
    if (const auto* c = std::get_if<trace::TraceCheckpoint>(&(*record)->value)) steps.push_back(c->step);
  }
  return steps;
}
}  // namespace

std::vector<int64_t> TraceFile::checkpoint_steps() {
  pyb::gil_scoped_release released;
  return readable_checkpoints(*reader_);
}

trace::TraceCheckpoint TraceFile::checkpoint(int64_t step) {
  pyb::gil_scoped_release released;
  auto index = reader_->checkpoint_index();
  if (!index) raise(ErrorKind::trace, index.error().message);
  for (const trace::CheckpointRef& c : *index) {
    if (c.step == step) {
      // Read from its start to the checkpoint, the trace is checked message by message, as replay and export
      // check it: damage before the checkpoint, or in it, and it is not handed out.
      auto reader = trace::TraceReader::reopen(*reader_, trace::without_payloads());
      if (!reader) raise(ErrorKind::trace, reader.error().message);
      const std::string which =
          "the checkpoint at step " + std::to_string(c.step) + " (byte " + std::to_string(c.offset) + ")";
      for (;;) {
        auto record = (*reader)->next();
        if (!record) raise(ErrorKind::trace, record.error().message + ": " + which + " cannot be read");
        if (!*record)
          raise(ErrorKind::trace, path_ + ": the trace ends before " + which + ": it cannot be read");
        if ((*record)->offset >= c.offset) break;
      }
      auto checkpoint = reader_->read_checkpoint(c.offset);
      if (!checkpoint) raise(ErrorKind::trace, checkpoint.error().message);
      return std::move(checkpoint).value();
    }
  }
  std::string held;
  for (int64_t s : readable_checkpoints(*reader_)) held += (held.empty() ? "" : ", ") + std::to_string(s);
  raise(ErrorKind::trace, path_ + ": no checkpoint after " + std::to_string(step) + " steps (it holds " +
                              (held.empty() ? std::string("none") : "those after " + held + " steps") + ")");
}

}  // namespace trainrr::py
