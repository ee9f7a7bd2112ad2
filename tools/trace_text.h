#pragma once
// How show, dump and export print a trace's plain values: one text line or one JSON object per event.
// JSON is written by hand from the value types: the Cap'n Proto codec needs the generated types, which only
// traces/ sees.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/escape.h"
#include "traces/trace.h"
#include "traces/trace_reader.h"

namespace trainrr::cli {

// Digests and Philox keys as 16 lowercase hex digits (JSON numbers lose precision above 2^53).
std::string hex64(uint64_t v);
std::string hex128(const trace::Digest128& d);
// Appends `item` to a list being built, after `separator` unless it is the first (i == 0).
void append_item(std::string& list, size_t i, const char* separator, const std::string& item);
// Shortest text that reads back as the same double.
std::string number(double v);
// A number as JSON: a finite one as a JSON number, an infinity or a NaN (which JSON has no number for) as the
// string "inf", "-inf" or "nan", so that a loss that went to infinity reads apart from one that is NaN.
std::string json_number(double v);
// Prints "trainrr: MESSAGE" on stderr, printable.
void print_error(std::string_view message);
// An epoch as people count it, from 1, as training's log and Keras print it. Every output counts so: text,
// JSON and the export manifest; only the trace file itself keeps the engine's 0-based index. A checkpoint
// says how many epochs were done (epochs_done), a count that reads the same either way.
std::string epoch_number(int64_t epoch);

// Builds one JSON object, keys in the order they are added. Strings are escaped for JSON: control
// characters, quotes and backslashes; bytes that are not valid UTF-8 become U+FFFD so every line parses.
class JsonObject {
 public:
  JsonObject& str(std::string_view key, std::string_view value);
  JsonObject& num(std::string_view key, double value);  // see json_number
  JsonObject& integer(std::string_view key, int64_t value);
  JsonObject& uinteger(std::string_view key, uint64_t value);
  JsonObject& boolean(std::string_view key, bool value);
  JsonObject& null(std::string_view key);
  // `json` must already be valid JSON (an array or object built with these helpers).
  JsonObject& raw(std::string_view key, std::string_view json);
  std::string done() const { return text_ + "}"; }

 private:
  void key(std::string_view k);
  std::string text_ = "{";
};

std::string json_array(std::span<const std::string> strings);
std::string json_array(std::span<const uint32_t> values);
std::string json_array(std::span<const int64_t> values);
std::string json_array(std::span<const double> values);
std::string json_map(std::span<const std::pair<std::string, double>> values);
std::string json_map(std::span<const std::pair<std::string, uint64_t>> values, bool hex);
std::string json_map(std::span<const std::pair<std::string, std::string>> values);

// The message kinds as dump names them.
std::string header_text(const trace::TraceHeader& h);  // several lines, each ending in '\n'
std::string header_json(const trace::TraceHeader& h);
std::string step_begin_text(const trace::TraceStep& s);
std::string step_begin_json(const trace::TraceStep& s, uint64_t offset);
std::string event_text(int64_t step, const trace::Event& e);
std::string event_json(int64_t step, const trace::Event& e);
// One allreduce call of a data-parallel run's rank.
std::string collective_text(const CollectiveCall& c);
std::string collective_json(const CollectiveCall& c);
// The GPU kernels of a step (TraceStep::kernels): one line for the step's counts and digest, one per launch.
std::string step_kernels_text(int64_t step, const trace::StepKernels& k);
std::string step_kernels_json(int64_t step, const trace::StepKernels& k);
std::string kernel_launch_text(int64_t step, const trace::KernelLaunch& l);
std::string kernel_launch_json(int64_t step, const trace::KernelLaunch& l);
std::string step_end_text(const trace::TraceStep& s);  // the step must have an end
std::string step_end_json(const trace::TraceStep& s);
std::string epoch_text(const trace::TraceEpoch& e);
std::string epoch_json(const trace::TraceEpoch& e, uint64_t offset);
std::string checkpoint_text(const trace::TraceCheckpoint& c, uint64_t offset);
std::string checkpoint_json(const trace::TraceCheckpoint& c, uint64_t offset);
std::string footer_text(const trace::TraceFooter& f);
std::string footer_json(const trace::TraceFooter& f, uint64_t offset);

}  // namespace trainrr::cli
