// `trainrr train CONFIG [--set k=v]...`: trains without recording.

#include <unistd.h>

#include <memory>

#include "engine/kernels/kernel_registry.h"
#include "engine/collective.h"
#include "tools/commands.h"
#include "tools/openblas_core.h"
#include "tools/run_common.h"
#include "tools/trace_text.h"

namespace trainrr::cli {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
};

int run_train(const TrainArgs& a) {
  // Before anything is read (a configuration from a pipe is read once): OpenBLAS within TRAINRR_ISA.
  for (const std::string& note : keep_openblas_within_isa()) std::fprintf(stderr, "note: %s\n", note.c_str());
  for (const std::string& note : openblas_fallback_notes()) std::fprintf(stderr, "note: %s\n", note.c_str());
  auto config = load_config(a.config, a.overrides);
  if (!config) {
    print_error(config.error().message);
    return kBadInput;
  }
  if (const std::string problem = new_run_problem(*config); !problem.empty()) {
    print_error(problem);
    return kBadInput;
  }
  if (Status s = check_run_device(*config); !s) {
    print_error(s.error().message);
    return kCannotReplay;
  }
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.log = stdout;
  opts.warnings = stderr;
  opts.progress = isatty(STDOUT_FILENO);
  auto training = Training::create(*config, opts);
  if (!training) {
    print_error(training.error().message);
    return training.error().machine ? kCannotReplay : kBadInput;  // this machine's memory, not the input
  }
  print_run_header(stdout, *config, **training);
  if (Status s = (*training)->fit(); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  print_final_metrics(stdout, **training);
  return kOk;
}

}  // namespace

void add_train_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a model from a configuration file, without recording.\n"
      "Exit codes: 0 trained, 2 bad input (configuration, data, a step that fails), 3 cannot run here\n"
      "(runtime.device names a GPU this machine or this build lacks; the model's tensors for a batch\n"
      "take more memory than this process can have).");
  cmd->add_option("config", args->config, "Run configuration (TOML)")->required();
  cmd->add_option("--set", args->overrides,
                  "Override a configuration key, e.g. --set train.epochs=3 or --set model.layers[1].rate=0")
      ->type_name("KEY=VALUE");
  cmd->callback([args, &exit_code] {
    // Under mpirun each process would train the whole run on its own: a data-parallel run is recorded.
    if (launched_by_mpirun()) {
      print_error("train does not run data-parallel: under mpirun, `trainrr record CONFIG -o RUN` trains one run "
                  "across the ranks and records it");
      exit_code = kBadInput;
      return;
    }
    exit_code = run_train(*args);
  });
}

}  // namespace trainrr::cli
