// `trainrr replay FILE`: re-executes a recorded run and says whether it reproduced bit for bit, or where,
// in which op and why it first diverged.

#include <fstream>
#include <memory>

#include "replayer/replayer.h"
#include "tools/commands.h"
#include "tools/openblas_core.h"
#include "tools/report_output.h"
#include "tools/run_folder.h"
#include "tools/trace_text.h"
#include "traces/trace_reader.h"

namespace trainrr::cli {
namespace {

struct ReplayArgs {
  std::string trace;
  std::string force = "all";
  std::vector<std::string> overrides;
  std::string data;
  bool allow_data_change = false;
  int64_t from_step = 0;
  int64_t to_step = -1;
  bool to_step_given = false;
  bool keep_going = false;
  bool no_detail = false;
  ReportOutput out;
};

// The steps replayed are [--from-step, --to-step): a range with nothing in it is a mistake, not a replay that
// reproduced by comparing nothing.
Status check_step_range(const ReplayArgs& a) {
  if (!a.to_step_given) return {};
  const std::string to = "--to-step " + std::to_string(a.to_step);
  if (a.to_step < 1) return Error{to + ": must be 1 or more (the replay stops before that step)"};
  if (a.to_step <= a.from_step)
    return Error{"--from-step " + std::to_string(a.from_step) + " " + to +
                 ": the range of steps is empty or reversed; --to-step (the step to stop before) must be "
                 "greater than --from-step"};
  return {};
}

int run_replay(const ReplayArgs& a) {
  if (Status s = check_step_range(a); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  auto force = parse_force(a.force);
  if (!force) {
    print_error(force.error().message);
    return kBadInput;
  }
  {
    std::vector<std::string> unsupported;
    if (a.out.json) unsupported.push_back("--json");
    if (!a.out.html.empty()) unsupported.push_back("--html");
    if (!a.data.empty()) unsupported.push_back("--data");
    if (a.allow_data_change) unsupported.push_back("--allow-data-change");
    if (a.from_step > 0) unsupported.push_back("--from-step");
    if (a.keep_going) unsupported.push_back("--keep-going");
    if (const int code = refuse_options_for_run(a.trace, unsupported); code >= 0) return code;
  }
  if (const int code = replay_run_folder(a.trace, *force, a.overrides, a.to_step); code >= 0) return code;
  // Under mpirun a run's folder is replayed rank by rank; one process's recording is replayed once.
  if (refused_under_mpirun("replay",
                           a.trace + " is the recording of one process, not of a data-parallel run"))
    return kBadInput;
  std::vector<std::string> notes;
  // keep_openblas_within_isa() may restart the process: before the trace is read.
  if (!force->kernels) notes = keep_openblas_within_isa();
  if (auto reader = trace::TraceReader::open(a.trace, trace::without_payloads())) {
    if (force->kernels) notes = use_recorded_openblas_core((*reader)->header());
    if (const auto& live = (*reader)->still_recording()) notes.insert(notes.begin(), *live);
  }
  ReplayOptions o;
  o.trace_path = a.trace;
  o.force = *force;
  o.overrides = a.overrides;
  o.data_path = a.data;
  o.allow_data_change = a.allow_data_change;
  o.from_step = a.from_step;
  o.to_step = a.to_step;
  o.keep_going = a.keep_going;
  o.element_detail = !a.no_detail;
  o.log = a.out.json ? nullptr : stderr;
  ReplayResult r = replay(o);
  if (r.exit_code == kBadInput || r.exit_code == kCannotReplay) {
    print_error(r.error);
    return r.exit_code;
  }
  r.report.facts.emplace_back("steps executed", std::to_string(r.steps_executed));
  r.report.notes.insert(r.report.notes.begin(), notes.begin(), notes.end());
  if (Status s = emit_report(r.report, a.out); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  return exit_after_report(r.exit_code, r.damage);
}

}  // namespace

void add_replay_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* cmd = app.add_subcommand(
      "replay",
      "Re-execute a recorded run: reproduced bit for bit, or the first divergence and its cause.\n"
      "Exit codes: 0 reproduced, 1 diverged, 2 bad input, 3 cannot replay here.");
  cmd->add_option("trace", args->trace, "Trace file (from trainrr record), or the folder of a run recorded under mpirun")->required();
  cmd->add_option("--force", args->force,
                  "Recorded choices to force: all, none, or a list of rng,split,shuffle,loader,kernels");
  cmd->add_option("--set", args->overrides,
                  "Override a configuration key for the replay, e.g. runtime.threads=1")
      ->type_name("KEY=VALUE");
  cmd->add_option("--data", args->data,
                  "Where the data file is now (checked against the recorded digest); for a trace of one "
                  "process only, not a run's folder");
  cmd->add_flag("--allow-data-change", args->allow_data_change,
                "Replay even when the data file's digest differs (the divergence is then caused by data); "
                "for a trace of one process only, not a run's folder");
  cmd->add_option(
         "--from-step", args->from_step,
         "Start from the last checkpoint at or before this step; above 0, for a trace of one process "
         "only, not a run's folder")
      ->check(CLI::Validator(
          [](const std::string& v) {
            return !v.empty() && v[0] != '-' ? std::string() : "must be 0 or more";
          },
          "N >= 0"));
  CLI::Option* to_step = cmd->add_option("--to-step", args->to_step, "Stop before this step (1 or more)");
  cmd->add_flag("--keep-going", args->keep_going,
                "Run past the first divergence; for a trace of one process only, not a run's folder");
  cmd->add_flag("--no-element-detail", args->no_detail,
                "Do not re-execute the divergent step for element values");
  add_report_options(*cmd, args->out);
  cmd->callback([args, to_step, &exit_code] {
    args->to_step_given = to_step->count() > 0;
    exit_code = run_replay(*args);
  });
}

}  // namespace trainrr::cli
