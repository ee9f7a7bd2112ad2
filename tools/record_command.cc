// `trainrr record CONFIG -o FILE`: trains exactly as `train` does and writes the trace.

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <memory>

#include "engine/kernels/kernel_registry.h"
#include "recorder/recorder.h"
#include "tools/commands.h"
#include "tools/openblas_core.h"
#include "tools/run_common.h"
#include "tools/trace_text.h"

namespace trainrr::cli {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted.store(true); }

struct RecordArgs {
  std::string config;
  std::string output;
  std::string level = "step";
  int64_t checkpoint_every = 0;
  bool embed_data = false;
  std::vector<std::string> overrides;
};

int run_record(const RecordArgs& a) {
  // Before anything is read (a configuration from a pipe is read once): OpenBLAS within TRAINRR_ISA.
  for (const std::string& note : keep_openblas_within_isa()) std::fprintf(stderr, "note: %s\n", note.c_str());
  for (const std::string& note : openblas_fallback_notes()) std::fprintf(stderr, "note: %s\n", note.c_str());
  auto config = load_config(a.config, a.overrides);
  if (!config) {
    print_error(config.error().message);
    return kBadInput;
  }
  RecordOptions ro;
  ro.path = a.output;
  ro.level = a.level == "op" ? ProbeLevel::op : a.level == "layer" ? ProbeLevel::layer : ProbeLevel::step;
  ro.checkpoint_every = a.checkpoint_every;
  ro.embed_data = a.embed_data;
  auto recorder = Recorder::create(*config, ro);
  if (!recorder) {
    print_error(recorder.error().message);
    return kBadInput;
  }
  auto isa = runtime_isa();
  if (!isa) {
    print_error(isa.error().message);
    return kBadInput;
  }
  const int threads = config->runtime.threads > 0 ? config->runtime.threads : ThreadPool::hardware_threads();
  (*recorder)->set_runtime(threads, isa_name(*isa), config->runtime.policy);

  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.hooks = recorder->get();
  opts.log = stdout;
  opts.warnings = stderr;
  opts.progress = isatty(STDOUT_FILENO);
  opts.interrupt = &g_interrupted;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  auto training = Training::create(*config, opts);
  if (!training) {  // refused before it started: -o is untouched, an earlier trace there kept
    print_error(training.error().message);
    return kBadInput;
  }
  if (Status s = (*recorder)->start(); !s) {  // the trace could not be started: nothing to train for
    print_error(s.error().message);
    return kBadInput;
  }
  print_run_header(stdout, *config, **training);
  if (a.checkpoint_every > 0)
    std::printf("recording to %s (level %s; checkpoints: the initial state, every %lld step%s, the final state)\n",
                a.output.c_str(), a.level.c_str(), static_cast<long long>(a.checkpoint_every),
                a.checkpoint_every == 1 ? "" : "s");
  else
    std::printf("recording to %s (level %s; checkpoints: the initial and the final state)\n", a.output.c_str(),
                a.level.c_str());
  Status fit = (*training)->fit();
  // The final state, for export and resumption, unless the last periodic checkpoint holds it already.
  if (fit.ok() && (a.checkpoint_every == 0 || (*training)->step() % a.checkpoint_every != 0))
    (*recorder)->checkpoint((*training)->state());
  Status done = (*recorder)->finish(fit.ok(), fit.ok() ? "completed" : "error: " + fit.error().message);
  if (!fit.ok()) {
    print_error(fit.error().message);
    if ((*recorder)->status().ok())
      std::fprintf(stderr, "trainrr: the trace %s holds every step completed before that\n", a.output.c_str());
    else
      std::fprintf(stderr, "trainrr: the trace %s holds the steps written before the failure (`trainrr show` counts them)\n",
                   a.output.c_str());
    return g_interrupted ? 130 : kBadInput;
  }
  if (!done.ok()) {
    print_error(done.error().message);
    return kBadInput;
  }
  print_final_metrics(stdout, **training);
  std::printf("trace: %s, %lld step%s, %llu bytes\n", a.output.c_str(),
              static_cast<long long>((*training)->step()), (*training)->step() == 1 ? "" : "s",
              static_cast<unsigned long long>((*recorder)->bytes_written()));
  return kOk;
}

}  // namespace

void add_record_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<RecordArgs>();
  CLI::App* cmd =
      app.add_subcommand("record", "Train from a configuration and record every choice to a trace.");
  cmd->add_option("config", args->config, "Run configuration (TOML)")->required();
  cmd->add_option("-o,--output", args->output, "Trace file to write")->required();
  cmd->add_option("--level", args->level,
                  "What to probe: step (summaries), layer (each layer's output), op (every op); default: step")
      ->check(CLI::IsMember({"step", "layer", "op"}));
  cmd->add_option("--checkpoint-every", args->checkpoint_every, "Write a checkpoint every N steps besides the initial and final states, which are always written "
                  "(default 0: only those two)")
      ->check(CLI::Validator(
          [](const std::string& v) { return !v.empty() && v[0] != '-' ? std::string() : "must be 0 or more"; },
          "N >= 0"));
  cmd->add_flag("--embed-data", args->embed_data, "Store the data files in the trace");
  cmd->add_option("--set", args->overrides,
                  "Override a configuration key, e.g. --set train.epochs=3 or --set model.layers[1].rate=0")
      ->type_name("KEY=VALUE");
  cmd->callback([args, &exit_code] { exit_code = run_record(*args); });
}

}  // namespace trainrr::cli
