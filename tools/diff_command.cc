// `trainrr diff A B`: two recorded runs compared without re-running them.

#include <memory>

#include "replayer/diff.h"
#include "tools/commands.h"
#include "tools/run_folder.h"
#include "tools/report_output.h"
#include "tools/trace_text.h"

namespace trainrr::cli {
namespace {

struct DiffArgs {
  std::string a, b;
  ReportOutput out;
};

int run_diff(const DiffArgs& args) {
  std::vector<std::string> unsupported;
  if (args.out.json) unsupported.push_back("--json");
  if (!args.out.html.empty()) unsupported.push_back("--html");
  if (const int code = refuse_options_for_run(args.a, unsupported); code >= 0) return code;
  if (const int code = diff_run_folders(args.a, args.b); code >= 0) return code;
  DiffResult r = diff_traces(args.a, args.b);
  if (r.exit_code == kBadInput) {
    print_error(r.error);
    return kBadInput;
  }
  if (Status s = emit_report(r.report, args.out); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  return exit_after_report(r.exit_code, r.damage);
}

}  // namespace

void add_diff_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<DiffArgs>();
  CLI::App* cmd = app.add_subcommand(
      "diff",
      "Compare two recorded runs without re-running them: configuration, environment, the first\n"
      "divergence by (step, site) and its cause, and the drift afterwards.\n"
      "Exit codes: 0 identical, 1 diverged, 2 bad input.");
  cmd->add_option("a", args->a, "First trace, or the folder of a run recorded under mpirun")->required();
  cmd->add_option("b", args->b, "Second trace, or the folder of a run recorded under mpirun")->required();
  add_report_options(*cmd, args->out);
  cmd->callback(
      [args, &exit_code] { exit_code = refused_under_mpirun("diff") ? kBadInput : run_diff(*args); });
}

}  // namespace trainrr::cli
