#include "python/src/reports.h"

#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "engine/escape.h"
#include "python/src/errors.h"
#include "python/src/sigint.h"
#include "replayer/bisect.h"
#include "replayer/diff.h"
#include "replayer/replayer.h"
#include "replayer/report_html.h"
#include "traces/trace_reader.h"

namespace trainrr::py {
namespace {

namespace pyb = pybind11;

// The commands' exit codes for a report that could not be made.
constexpr int kBadInput = 2, kCannotReplay = 3;

Report finish(DivergenceReport report, int exit_code, std::optional<std::string> damage) {
  Report r;
  r.report = std::move(report);
  r.exit_code = damage ? kBadInput : exit_code;
  r.damage = std::move(damage);
  return r;
}

// Ctrl-C stopped the command: KeyboardInterrupt, saying at which step when the replay says so ("cannot replay
// here: interrupted at step 12").
[[noreturn]] void interrupted(const std::string& command, const std::string& error) {
  const size_t at = error.find("interrupted at step ");
  raise(ErrorKind::interrupted,
        command + ": " + (at == std::string::npos ? "interrupted" : error.substr(at)));
}

// What the command prints as it goes, kept: a memory stream the bisection's log writes to.
class Captured {
 public:
  Captured() : file_(open_memstream(&data_, &size_)) {}
  ~Captured() {
    if (file_) std::fclose(file_);
    std::free(data_);
  }
  Captured(const Captured&) = delete;
  Captured& operator=(const Captured&) = delete;
  FILE* file() { return file_; }
  std::string text() {
    if (file_) std::fflush(file_);
    return data_ ? std::string(data_, size_) : std::string();
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  FILE* file_;
};

}  // namespace

std::string Report::text() const { return printable(report_text(report)); }
std::string Report::json() const { return report_json(report); }
std::string Report::html() const { return report_html(report); }

Report replay_trace(const ReplaySettings& s, bool catch_sigint) {
  auto force = parse_force(s.force);
  // The replayer names the option ("--force: unknown choice 'foo' ..."): here it is the argument force.
  if (!force) {
    const std::string& message = force.error().message;
    raise(ErrorKind::config, "replay: " + (message.rfind("--", 0) == 0 ? message.substr(2) : message));
  }
  if (s.to_step >= 0 && s.to_step <= s.from_step)
    raise(ErrorKind::config, "replay: to_step " + std::to_string(s.to_step) + " must be greater than from_step " +
                                 std::to_string(s.from_step));
  pyb::gil_scoped_release released;
  std::vector<std::string> notes;
  if (auto reader = trace::TraceReader::open(s.trace, trace::without_payloads()))
    if (const auto& live = (*reader)->still_recording()) notes.push_back(*live);
  ReplayOptions o;
  o.trace_path = s.trace;
  o.force = *force;
  o.overrides = s.overrides;
  o.data_path = s.data;
  o.allow_data_change = s.allow_data_change;
  o.from_step = s.from_step;
  o.to_step = s.to_step;
  o.keep_going = s.keep_going;
  o.element_detail = s.element_detail;
  std::atomic<bool> stop{false};
  ReplayResult r;
  {
    SigintScope sigint(catch_sigint, stop);
    ReplayInterruptScope interrupt(&stop);
    r = replay(o);
  }
  if (stop.load()) interrupted("replay", r.error);
  if (r.exit_code == kBadInput || r.exit_code == kCannotReplay) raise(ErrorKind::trace, r.error);
  r.report.facts.emplace_back("steps executed", std::to_string(r.steps_executed));
  r.report.notes.insert(r.report.notes.begin(), notes.begin(), notes.end());
  return finish(std::move(r.report), r.exit_code, std::move(r.damage));
}

Report diff_traces(const std::string& a, const std::string& b) {
  pyb::gil_scoped_release released;
  DiffResult r = trainrr::diff_traces(a, b);
  if (r.exit_code == kBadInput) raise(ErrorKind::trace, r.error);
  return finish(std::move(r.report), r.exit_code, std::move(r.damage));
}

Report bisect_trace(const std::string& trace, const std::string& against,
                    const std::vector<std::string>& overrides, const std::string& data, bool catch_sigint) {
  pyb::gil_scoped_release released;
  BisectOptions o;
  o.trace_path = trace;
  o.against = against;
  o.overrides = overrides;
  o.data_path = data;
  // The command prints its stages and its result as it goes, then the report: str(report) is all of it.
  Captured log;
  o.log = log.file();
  std::atomic<bool> stop{false};
  BisectResult r;
  {
    SigintScope sigint(catch_sigint, stop);
    ReplayInterruptScope interrupt(&stop);
    r = bisect(o);
  }
  if (stop.load()) interrupted("bisect", r.error);
  if (r.exit_code == kBadInput || r.exit_code == kCannotReplay) raise(ErrorKind::trace, r.error);
  Report out = finish(std::move(r.report), r.exit_code, std::move(r.damage));
  out.log = log.text();
  return out;
}

}  // namespace trainrr::py
