// The C++ API example of README.md (the part between the markers is quoted there verbatim, and a test keeps
// the two equal): trains a configuration for three epochs while recording it, then evaluates the test split.
// Usage: api_example CONFIG TRACE

#include <cstdio>
#include <string>

#include "engine/kernels/kernel_registry.h"
#include "engine/thread_pool.h"
#include "engine/trainer.h"
#include "recorder/recorder.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: api_example CONFIG TRACE\n");
    return 2;
  }
  const std::string config_path = argv[1], trace_path = argv[2];
  auto fail = [](const std::string& why) {
    std::fprintf(stderr, "api_example: %s\n", why.c_str());
    return 2;
  };
  // README begin
  trainrr::KernelRegistry registry;  // built explicitly: nothing registers itself
  trainrr::register_cpu_kernels(registry);
  auto config = trainrr::load_config(config_path, {"train.epochs=3"});
  if (!config) return fail(config.error().message);
  auto recorder = trainrr::Recorder::create(*config, {trace_path, trainrr::ProbeLevel::layer, 50, false});
  if (!recorder) return fail(recorder.error().message);
  auto isa = trainrr::runtime_isa();  // this CPU's instruction set, or a lower one from TRAINRR_ISA
  if (!isa) return fail(isa.error().message);
  const int threads =
      config->runtime.threads > 0 ? config->runtime.threads : trainrr::ThreadPool::hardware_threads();
  (*recorder)->set_runtime(threads, trainrr::isa_name(*isa), config->runtime.policy);

  trainrr::TrainingOptions options;
  options.registry = &registry;
  options.hooks = recorder->get();  // or any trainrr::Hooks: every choice point calls it
  auto training = trainrr::Training::create(*config, options);
  if (!training) return fail(training.error().message);
  if (trainrr::Status started = (*recorder)->start(); !started) return fail(started.error().message);
  trainrr::Status fit = (*training)->fit();
  // The final state, then the footer.
  trainrr::Status written =
      (*recorder)->finish((*training)->state(), fit.ok(), fit.ok() ? "completed" : fit.error().message);
  if (!fit) return fail(fit.error().message);
  if (!written) return fail(written.error().message);
  trainrr::Evaluation test = (*training)->evaluate((*training)->test_data());
  std::printf("test: loss %.4f - accuracy %.4f (%lld rows)\n", test.loss, test.accuracy,
              static_cast<long long>(test.rows));
  // README end
  return 0;
}
