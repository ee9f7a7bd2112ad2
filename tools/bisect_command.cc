// `trainrr bisect FILE`: narrows a divergence to the smallest set of recorded choices that must be forced.

#include <memory>

#include "replayer/bisect.h"
#include "replayer/runs.h"
#include "tools/commands.h"
#include "tools/openblas_core.h"
#include "tools/pinned_trace.h"
#include "tools/report_output.h"
#include "tools/run_folder.h"
#include "tools/trace_text.h"
#include "traces/run_set.h"

namespace trainrr::cli {
namespace {

struct BisectArgs {
  std::string trace;
  std::string against;
  std::vector<std::string> overrides;
  std::string data;
  ReportOutput out;
};

int run_bisect(const BisectArgs& a) {
  if (const int code = refuse_for(a.trace, "bisect"); code >= 0) return code;
  if (!a.against.empty())
    if (const int code = refuse_for(a.against, "bisect"); code >= 0) return code;
  if (trace::is_run_folder(a.trace) || (!a.against.empty() && trace::is_run_folder(a.against))) {
    if (!a.against.empty()) {
      print_error("bisect --against takes two traces of one process; two data-parallel runs are compared by "
                  "`trainrr diff " + a.trace + " " + a.against + "`");
      return kBadInput;
    }
    std::vector<std::string> unsupported;
    if (a.out.json) unsupported.push_back("--json");
    if (!a.out.html.empty()) unsupported.push_back("--html");
    if (!a.data.empty()) unsupported.push_back("--data");
    if (const int code = refuse_options_for_run(a.trace, unsupported); code >= 0) return code;
    RunReport r = bisect_run(a.trace, a.overrides);
    for (const std::string& note : killed_recording_notes(a.trace)) r.lines.push_back("  " + note);
    // A report comes first, where there is one (a damaged rank trace: compared up to the damage, exit 2).
    for (const auto& line : r.lines) std::printf("%s\n", inline_text(line).c_str());  // it quotes the traces
    if (std::fflush(stdout) != 0) return kBadInput;
    if (r.exit_code == kBadInput || r.exit_code == kCannotReplay) print_error(r.error);
    return r.exit_code;
  }
  // The free side is this machine's run: OpenBLAS within TRAINRR_ISA, as replay --force none runs it.
  const std::vector<std::string> openblas_notes = keep_openblas_within_isa();
  BisectOptions o;
  o.trace_path = a.trace;
  o.against = a.against;
  o.overrides = a.overrides;
  o.data_path = a.data;
  o.log = a.out.json ? stderr : stdout;
  const PinnedTrace pinned(a.trace), pinned_against(a.against);
  o.replaced = [&pinned, &pinned_against] {
    std::string why = pinned.replaced("bisect");
    return why.empty() ? pinned_against.replaced("bisect") : why;
  };
  BisectResult r = bisect(o);
  if (r.exit_code == kBadInput || r.exit_code == kCannotReplay) {
    print_error(r.error);
    return r.exit_code;
  }
  for (const PinnedTrace* p : {&pinned, &pinned_against})
    if (const std::string why = p->replaced("bisect"); !why.empty()) {
      print_error(why);
      return kBadInput;
    }
  r.report.notes.insert(r.report.notes.begin(), openblas_notes.begin(), openblas_notes.end());
  if (Status s = emit_report(r.report, a.out); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  return exit_after_report(r.exit_code, r.damage);
}

}  // namespace

void add_bisect_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<BisectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bisect",
      "Narrow a divergence between a recording and a free replay here: recorded evidence first (no\n"
      "execution), then a forced-and-free lockstep replay from the nearest checkpoint, then delta\n"
      "debugging to the smallest set of recorded choices that must be forced.\n"
      "Exit codes: 0 a free replay reproduces, 1 a free replay does not (narrowed to the choices to\n"
      "force, or, where even every recorded choice forced does not reproduce here, what differs\n"
      "said instead), 2 bad input, 3 cannot replay here.");
  cmd->add_option("trace", args->trace,
                  "Trace file (from trainrr record), or the folder of a run recorded under mpirun")
      ->required();
  cmd->add_option("--against", args->against,
                  "Another trace of the run: locate the step from both recordings; for a trace of one "
                  "process only, not a run's folder");
  cmd->add_option("--set", args->overrides,
                  "Override a configuration key for the replays, e.g. runtime.threads=1")
      ->type_name("KEY=VALUE");
  cmd->add_option("--data", args->data,
                  "Where the data file is now; for a trace of one process only, not a run's folder");
  add_report_options(*cmd, args->out);
  cmd->callback(
      [args, &exit_code] { exit_code = refused_under_mpirun("bisect") ? kBadInput : run_bisect(*args); });
}

}  // namespace trainrr::cli
