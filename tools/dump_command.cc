// `trainrr dump FILE [--json] [--steps A:B]`: every message and event of a trace, in file order, one line
// each: text for people, JSON Lines (stable keys: type, step, site, ...) for programs.

#include <charconv>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>

#include "tools/commands.h"
#include "traces/run_set.h"
#include "tools/trace_text.h"
#include "traces/trace_reader.h"

namespace trainrr::cli {
namespace {

struct DumpArgs {
  std::string file;
  bool json = false;
  std::string steps;
};

// Steps [first, last) to print.
struct StepRange {
  int64_t first = 0;
  int64_t last = std::numeric_limits<int64_t>::max();
  bool contains(int64_t s) const { return s >= first && s < last; }
};

std::optional<int64_t> parse_step(std::string_view s) {
  int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// "A:B", "A:", ":B", or "N" for the one step N.
Result<StepRange> parse_range(const std::string& text) {
  const Error bad{"--steps '" + text +
                  "': expected A:B, A: or :B with whole step numbers A < B (steps A..B-1), or N"};
  StepRange r;
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    auto n = parse_step(text);
    if (!n || *n == std::numeric_limits<int64_t>::max()) return bad;
    return StepRange{*n, *n + 1};
  }
  const std::string_view a = std::string_view(text).substr(0, colon),
                         b = std::string_view(text).substr(colon + 1);
  if (a.empty() && b.empty()) return bad;
  if (!a.empty()) {
    auto n = parse_step(a);
    if (!n) return bad;
    r.first = *n;
  }
  if (!b.empty()) {
    auto n = parse_step(b);
    if (!n) return bad;
    r.last = *n;
  }
  if (r.first >= r.last) return bad;  // empty or reversed
  return r;
}

// What dump prints, written out at once, or held while `holding`: with --steps, nothing is printed until a
// step of the range is, so that a range with no step of the trace in it prints nothing before it is refused.
struct Output {
  bool holding = false;
  std::string held;

  void raw(const std::string& s) {
    if (holding)
      held += s;
    else
      std::fwrite(s.data(), 1, s.size(), stdout);
  }
  void release() {
    holding = false;
    raw(held);
    held.clear();
  }
};
Output out;

// Every line quotes the trace; JSON lines are escaped already, text lines are escaped for the terminal here,
// and each is one line: a newline inside it came from the trace, and is escaped too.
void line(const std::string& text) { out.raw(inline_text(text) + "\n"); }

int run_dump(const DumpArgs& a) {
  if (trace::is_run_folder(a.file)) {
    print_error(a.file + " is the folder of a data-parallel run: dump reads one rank's trace (" +
                trace::rank_trace_path(a.file, 0) + ")");
    return kBadInput;
  }
  StepRange range;
  if (!a.steps.empty()) {
    auto r = parse_range(a.steps);
    if (!r) {
      print_error(r.error().message);
      return kBadInput;
    }
    range = *r;
  }
  // The embedded data is never printed, and the checkpoint tensors only by their digests in JSON.
  trace::ReaderLimits limits = trace::without_payloads();
  limits.tensor_values = a.json;
  auto opened = trace::TraceReader::open(a.file, limits);
  if (!opened) {
    print_error(opened.error().message);
    return kBadInput;
  }
  trace::TraceReader& r = **opened;
  static char buffer[1 << 16];
  std::setvbuf(stdout, buffer, _IOFBF, sizeof buffer);

  out = Output{};
  out.holding = !a.steps.empty();
  if (a.json)
    line(header_json(r.header()));
  else
    out.raw(printable(header_text(r.header())));

  int64_t last_step = -1;  // the step that non-step messages (epochs, checkpoints) follow
  int64_t complete = 0;
  uint64_t end_offset = r.header_size();  // the end of the last complete message
  std::optional<Error> stopped;
  for (;;) {
    if (std::ferror(stdout)) break;  // a reader gone (`| head`) or a full disk: main reports it
    auto rec = r.next();
    if (!rec) {
      stopped = rec.error();
      break;
    }
    if (!*rec) break;
    const trace::TraceRecord& m = **rec;
    end_offset = m.offset + m.size;
    if (const auto* s = std::get_if<trace::TraceStep>(&m.value)) {
      last_step = s->index;
      if (s->end) ++complete;
      if (!range.contains(s->index)) continue;
      out.release();
      line(a.json ? step_begin_json(*s, m.offset) : step_begin_text(*s));
      for (const auto& e : s->events) line(a.json ? event_json(s->index, e) : event_text(s->index, e));
      for (const auto& c : s->collectives) line(a.json ? collective_json(c) : collective_text(c));
      if (s->kernels) {
        line(a.json ? step_kernels_json(s->index, *s->kernels) : step_kernels_text(s->index, *s->kernels));
        for (const auto& l : s->kernels->launches)
          line(a.json ? kernel_launch_json(s->index, l) : kernel_launch_text(s->index, l));
      }
      if (s->end) line(a.json ? step_end_json(*s) : step_end_text(*s));
      continue;
    }
    if (const auto* f = std::get_if<trace::TraceFooter>(&m.value)) {
      line(a.json ? footer_json(*f, m.offset) : footer_text(*f));
      continue;
    }
    const bool in_range = last_step < 0 ? range.first == 0 : range.contains(last_step);
    if (!in_range) continue;
    if (const auto* e = std::get_if<trace::TraceEpoch>(&m.value))
      line(a.json ? epoch_json(*e, m.offset) : epoch_text(*e));
    else if (const auto* c = std::get_if<trace::TraceCheckpoint>(&m.value))
      line(a.json ? checkpoint_json(*c, m.offset) : checkpoint_text(*c, m.offset));
  }
  int rc = kOk;
  if (stopped) {
    const trace::ReadStop& stop = *r.stopped();
    if (a.json)
      line(JsonObject()
               .str("type", "incomplete")
               .integer("complete_steps", complete)
               .uinteger("offset", stop.offset)
               .boolean("truncated", stop.truncated)
               .boolean("damaged", !stop.truncated)
               .str("reason", stop.why)
               .done());
    else
      line(std::string(stop.truncated ? "did not end cleanly: " : "damaged: ") + std::to_string(complete) +
           " complete steps readable; reading stopped at byte " + std::to_string(stop.offset) + ": " +
           stop.why);
    // A cut tail is what a killed recording leaves: everything before it was printed and is complete.
    if (!stop.truncated || r.ended_cleanly()) rc = kBadInput;
  } else if (!r.ended_cleanly()) {
    const bool live = r.still_recording().has_value();
    if (a.json)
      line(JsonObject()
               .str("type", "incomplete")
               .integer("complete_steps", complete)
               .uinteger("offset", end_offset)
               .boolean("truncated", !live)
               .boolean("damaged", false)
               .str("reason", live ? "still being recorded" : "no footer")
               .done());
    else
      line((live ? "still being recorded: " : "did not end cleanly: ") + std::to_string(complete) +
           " complete step" + (complete == 1 ? "" : "s") + " readable" +
           (live ? " so far, to byte " + std::to_string(end_offset)
                 : "; the file ends at byte " + std::to_string(end_offset) +
                       " after a complete message, with no footer (the recording was killed or crashed)"));
  }
  // The notes last, after what the trace holds and where it stops.
  std::vector<std::string> notes = r.notes();
  if (const auto& live = r.still_recording()) notes.insert(notes.begin(), *live);
  for (const auto& note : notes) {
    if (a.json)
      line(JsonObject().str("type", "note").str("text", note).done());
    else
      line("note " + note);
  }

  // A range with no step of the trace in it is refused, as replay refuses a --from-step past the run's end;
  // one that runs past the trace's last step is printed as far as the trace goes, and says so.
  std::optional<std::string> range_error;
  if (rc == kOk && !a.steps.empty()) {
    const std::string holds = last_step < 0 ? std::string("it holds no step")
                                            : "its steps are 0.." + std::to_string(last_step);
    const std::string how = r.ended_cleanly() ? "" : r.still_recording() ? " so far" : " (it did not end cleanly)";
    if (range.first > last_step) {
      range_error = "--steps '" + a.steps + "': no step of " + a.file + " is in the range: " + holds + how;
      rc = kBadInput;
    } else if (range.last != std::numeric_limits<int64_t>::max() && range.last > last_step + 1) {
      const std::string note =
          "--steps '" + a.steps + "' runs past the last step of the trace: " + holds + how + "; printed " +
          (range.first == last_step ? "step " + std::to_string(last_step)
                                    : "steps " + std::to_string(range.first) + ".." + std::to_string(last_step));
      line(a.json ? JsonObject().str("type", "note").str("text", note).done() : "note " + note);
    }
  }
  if (!range_error) out.release();  // a refused range prints nothing of the trace
  std::fflush(stdout);
  if (rc != kOk) print_error(range_error ? *range_error : stopped->message);
  return rc;
}

}  // namespace

void add_dump_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<DumpArgs>();
  CLI::App* cmd = app.add_subcommand(
      "dump",
      "Print every message and event of a trace in file order, one line each; a step's GPU kernels,\n"
      "where CUPTI recorded them, follow its events (gpu_kernels: count, digest of the sequence,\n"
      "unattributed and dropped; gpu_kernel: each launch's op, kernel, grid, block, shared memory, ns).\n"
      "Steps count from 0; epochs count from 1, as training and Keras print them, in text and JSON alike\n"
      "(a checkpoint gives epochs_done, the epochs completed).\n"
      "Exit codes: 0 read (a killed recording or one still running included), 2 not a trace, damaged,\n"
      "or bad --steps.");
  cmd->add_option("file", args->file,
                  "Trace file (of a run recorded under mpirun: one rank's, FOLDER/rankR.trr)")
      ->required();
  cmd->add_flag("--json", args->json, "JSON Lines: one object per message or event, with a \"type\" key");
  cmd->add_option("--steps", args->steps,
                  "Only steps A..B-1 (A:B, A: or :B; N alone: step N) and the epochs and checkpoints "
                  "that follow them; a range with no step of the trace in it is refused (exit 2), one that "
                  "runs past its last step is printed to it, with a note")
      ->type_name("A:B");
  cmd->callback(
      [args, &exit_code] { exit_code = refused_under_mpirun("dump") ? kBadInput : run_dump(*args); });
}

}  // namespace trainrr::cli
