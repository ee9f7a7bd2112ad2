#pragma once
// Crafting traces for tests: a real recording rewritten with the project's own reader and writer.

#include <functional>
#include <string>
#include <variant>

#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace trainrr::testing {

// Copies the trace at `from` to `to`, message by message through the project's reader and writer, with
// `edit` applied to the header, and `edit_step` and `edit_checkpoint` (if given) to each step and checkpoint;
// a checkpoint for which `edit_checkpoint` returns false is left out, `edit_footer` to the footer (the
// writer counts the steps, events and checkpoints itself) and `edit_epoch` to each epoch's logs. "" or the
// error's message.
inline std::string rewrite_trace(const std::string& from, const std::string& to,
                                 const std::function<void(trace::TraceHeader&)>& edit,
                                 const std::function<void(trace::TraceStep&)>& edit_step = {},
                                 const std::function<bool(trace::TraceCheckpoint&)>& edit_checkpoint = {},
                                 const std::function<void(trace::TraceFooter&)>& edit_footer = {},
                                 const std::function<void(trace::TraceEpoch&)>& edit_epoch = {}) {
  auto reader = trace::TraceReader::open(from);
  if (!reader) return reader.error().message;
  trace::TraceHeader header = (*reader)->header();
  header.writer_version.clear();
  edit(header);
  auto writer = trace::TraceWriter::create(to, header);
  if (!writer) return writer.error().message;
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec) return rec.error().message;
    if (!rec->has_value()) break;
    Status s;
    if (auto* step = std::get_if<trace::TraceStep>(&(*rec)->value)) {
      if (edit_step) edit_step(*step);
      s = (*writer)->write_step(*step);
    } else if (auto* epoch = std::get_if<trace::TraceEpoch>(&(*rec)->value)) {
      if (edit_epoch) edit_epoch(*epoch);
      s = (*writer)->write_epoch(*epoch);
    } else if (auto* cp = std::get_if<trace::TraceCheckpoint>(&(*rec)->value)) {
      if (!edit_checkpoint || edit_checkpoint(*cp)) s = (*writer)->write_checkpoint(*cp);
    } else if (auto* footer = std::get_if<trace::TraceFooter>(&(*rec)->value)) {
      if (edit_footer) edit_footer(*footer);
      s = (*writer)->finish(*footer);
    }
    if (!s) return s.error().message;
  }
  return "";
}

}  // namespace trainrr::testing
