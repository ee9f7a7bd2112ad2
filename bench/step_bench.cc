// Training step time of the benchmark workloads (bench/configs/*.toml), for each thread count and policy.
// The default, deterministic and portable trainings of a workload and thread count are built together and timed in
// alternating repetitions, so that their ratio comes from one run on one machine state (CONVENTIONS.md).
//
//   step_bench [--configs DIR] [--workloads a,b] [--threads 1,2] [--steps N] [--reps R] [--warmup W]
//              [--min-ms T] [--json FILE] [--kernels] [--device cpu|cuda|cuda:N]
//
// --device cuda trains on the GPU (runtime.device); the portable policy, which the GPU does not run, is left
// out there. A GPU step ends as a `trainrr train` step does, with the loss and the predictions (for the
// accuracy) read back, so its wall time is the whole step's; like `train`, it reads back neither the step's
// parameters and gradients nor the dropout masks, which only a recording or a replay reads.
// --steps fixes the steps per repetition; without it each workload gets as many as fill --min-ms.
// --kernels prints the kernel each site chose under each policy.
// --phases prints, for the deterministic policy, where a step's time goes: the time from one op probe to
// the next is charged to the later probe's site (the op that just ran), probes at op level being on.

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/device.h"
#include "engine/hooks.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#if TRAINRR_WITH_CUDA
#include "cuda/device.h"
#include "cuda/engine_device.h"
#endif

namespace trainrr {
namespace {

struct Options {
  std::string configs = TRAINRR_BENCH_CONFIGS;  // set by CMake to bench/configs
  std::vector<std::string> workloads = {"breast_cancer", "mlp", "convnet"};
  std::vector<int> threads = {1, 2};
  int64_t steps = 0;  // 0: calibrate from min_ms
  int reps = 5;
  int64_t warmup = 5;
  double min_ms = 300;
  std::string json;
  std::string device = "cpu";
  bool kernels = false;
  bool phases = false;
};

struct Row {
  std::string workload;
  int threads = 0;
  std::string policy;
  int64_t steps = 0;
  double ms_per_step = 0;      // wall clock, median over repetitions
  double cpu_ms_per_step = 0;  // CPU time of the whole process (all threads), median over repetitions
};

// Remembers the kernel chosen at each site, for --kernels.
class ChoiceLog : public Hooks {
 public:
  void kernel_selected(KernelChoice& choice) override { choices.push_back(choice.site + " -> " + choice.chosen); }
  bool reads_step_tensors() const override { return false; }
  bool reads_drawn_values() const override { return false; }
  std::vector<std::string> choices;
};

// Charges the time between consecutive probes to the site of the later one; what follows the last probe
// of a step (loss bookkeeping, step end) goes to "(rest of step)".
class PhaseTimer : public Hooks {
 public:
  using Clock = std::chrono::steady_clock;
  ProbeLevel probe_level() const override { return ProbeLevel::op; }
  void step_begin(int64_t, int, int64_t) override { last_ = Clock::now(); }
  bool reads_step_tensors() const override { return false; }
  bool reads_drawn_values() const override { return false; }
  void probe(std::string_view site, Phase, const Tensor&) override { charge(std::string(site)); }
  void step_end(const StepSummary&) override {
    charge("(rest of step)");
    ++steps;
  }
  void reset() {
    ms.clear();
    steps = 0;
  }
  std::vector<std::pair<std::string, double>> ms;  // site -> total milliseconds, first-seen order
  int64_t steps = 0;

 private:
  void charge(const std::string& site) {
    const auto now = Clock::now();
    const double d = std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
    for (auto& [name, total] : ms)
      if (name == site) {
        total += d;
        return;
      }
    ms.emplace_back(site, d);
  }
  Clock::time_point last_ = Clock::now();
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "step_bench: %s (see the comment at the top of bench/step_bench.cc)\n", msg.c_str());
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, const std::string& flag) -> std::string {
    const std::string arg = argv[i];
    if (arg.size() > flag.size() && arg[flag.size()] == '=') return arg.substr(flag.size() + 1);
    if (i + 1 >= argc) usage_error(flag + " needs a value");
    return argv[++i];
  };
  auto number = [&](const std::string& flag, const std::string& text) -> double {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || v < 0) usage_error(flag + ": not a non-negative number: " + text);
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto is = [&](const std::string& flag) { return arg == flag || arg.rfind(flag + "=", 0) == 0; };
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: step_bench [--configs DIR] [--workloads breast_cancer,mlp,convnet] [--threads 1,2]\n"
          "                  [--steps N] [--reps R] [--warmup W] [--min-ms T] [--json FILE] [--kernels] [--phases]\n"
          "                  [--device cpu|cuda|cuda:N]\n"
          "Milliseconds per training step (median of R repetitions of N steps) under the default, the\n"
          "deterministic and the portable policy, and the ratios det/def and port/det.\n");
      std::exit(0);
    } else if (is("--configs")) {
      o.configs = value(i, "--configs");
    } else if (is("--workloads")) {
      o.workloads = split_list(value(i, "--workloads"));
    } else if (is("--threads")) {
      o.threads.clear();
      for (const auto& t : split_list(value(i, "--threads"))) o.threads.push_back(static_cast<int>(number("--threads", t)));
    } else if (is("--steps")) {
      o.steps = static_cast<int64_t>(number("--steps", value(i, "--steps")));
    } else if (is("--reps")) {
      o.reps = std::max(1, static_cast<int>(number("--reps", value(i, "--reps"))));
    } else if (is("--warmup")) {
      o.warmup = static_cast<int64_t>(number("--warmup", value(i, "--warmup")));
    } else if (is("--min-ms")) {
      o.min_ms = number("--min-ms", value(i, "--min-ms"));
    } else if (is("--json")) {
      o.json = value(i, "--json");
    } else if (is("--device")) {
      o.device = value(i, "--device");
    } else if (arg == "--kernels") {
      o.kernels = true;
    } else if (arg == "--phases") {
      o.phases = true;
    } else {
      usage_error("unknown argument: " + arg);
    }
  }
  return o;
}

struct Run {
  std::string policy;
  ChoiceLog hooks;
  std::unique_ptr<Training> training;
  std::vector<double> ms_per_step;  // one per repetition
  std::vector<double> cpu_ms_per_step;
};

double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

void check(const Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "step_bench: %s: %s\n", what.c_str(), s.error().message.c_str());
    std::exit(1);
  }
}

// Runs `steps` steps and returns the wall time in milliseconds.
double time_steps(Training& t, int64_t steps, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  check(t.fit(t.step() + steps), what);
  const auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(end - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void write_json(const std::string& path, const std::vector<Row>& rows, const Options& o) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "step_bench: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fprintf(f, "{\n  \"engine\": \"trainrr\",\n  \"reps\": %d,\n  \"results\": [\n", o.reps);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"workload\": \"%s\", \"threads\": %d, \"policy\": \"%s\", \"steps\": %lld, "
                 "\"ms_per_step\": %.6f, \"cpu_ms_per_step\": %.6f}%s\n",
                 r.workload.c_str(), r.threads, r.policy.c_str(), static_cast<long long>(r.steps), r.ms_per_step,
                 r.cpu_ms_per_step, i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

// Where the time of a deterministic step goes, per workload and thread count.
void print_phases(const Options& o, const KernelRegistry& registry) {
  for (const std::string& workload : o.workloads)
    for (int threads : o.threads) {
      PhaseTimer timer;
      auto config = load_config(o.configs + "/" + workload + ".toml",
                                {"runtime.threads=" + std::to_string(threads), "runtime.policy=deterministic"});
      if (!config) continue;
      TrainingOptions options;
      options.registry = &registry;
      options.hooks = &timer;
      auto training = Training::create(*config, options);
      if (!training) continue;
      const std::string what = workload + " phases";
      time_steps(**training, std::max<int64_t>(o.warmup, 1), what);
      timer.reset();
      const int64_t steps = o.steps > 0 ? o.steps : 20;
      const double total = time_steps(**training, steps, what);
      auto rows = timer.ms;
      std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      std::printf("\nphases: %s, %d thread%s, deterministic, %.3f ms/step over %lld steps (probes on)\n",
                  workload.c_str(), threads, threads == 1 ? "" : "s", total / steps, static_cast<long long>(steps));
      for (const auto& [site, ms] : rows)
        if (ms / total >= 0.005)
          std::printf("  %-40s %9.4f ms/step %5.1f%%\n", site.c_str(), ms / steps, 100 * ms / total);
    }
}

}  // namespace
}  // namespace trainrr

int main(int argc, char** argv) {
  using namespace trainrr;
  const Options o = parse_args(argc, argv);
#if TRAINRR_WITH_CUDA
  set_cuda_probe(&cuda::probe_gpu);
  set_cuda_backend(&cuda::open_cuda_device);
#endif
  KernelRegistry registry;
  register_cpu_kernels(registry);

  std::vector<Row> rows;
  std::printf("%-14s %7s %11s %11s %11s %9s %9s %7s\n", "workload", "threads", "default", "determ.", "portable",
              "det/def", "port/det", "steps");
  std::printf("%-14s %7s %11s %11s %11s %9s %9s %7s\n", "", "", "ms/step", "ms/step", "ms/step", "", "", "");
  for (const std::string& workload : o.workloads) {
    const std::string path = o.configs + "/" + workload + ".toml";
    for (int threads : o.threads) {
      std::vector<std::unique_ptr<Run>> runs;
      std::vector<const char*> policies = {"default", "deterministic", "portable"};
      if (o.device != "cpu") policies.pop_back();  // the GPU has no portable exp, log and tanh
      for (const char* policy : policies) {
        auto run = std::make_unique<Run>();
        run->policy = policy;
        auto config = load_config(path, {"runtime.threads=" + std::to_string(threads),
                                         std::string("runtime.policy=") + policy, "runtime.device=" + o.device});
        if (!config) {
          std::fprintf(stderr, "step_bench: %s\n", config.error().message.c_str());
          return 1;
        }
        TrainingOptions options;
        options.registry = &registry;
        options.hooks = &run->hooks;
        auto training = Training::create(*config, options);
        if (!training) {
          std::fprintf(stderr, "step_bench: %s: %s\n", path.c_str(), training.error().message.c_str());
          return 1;
        }
        run->training = std::move(training.value());
        runs.push_back(std::move(run));
      }
      const std::string what = workload + " threads=" + std::to_string(threads);
      // Warm-up: kernel selection happens on the first call of each site, caches and pages settle.
      for (auto& run : runs) time_steps(*run->training, o.warmup, what);
      int64_t steps = o.steps;
      if (steps == 0) {
        const double probe = time_steps(*runs[0]->training, 3, what) / 3;
        steps = std::clamp<int64_t>(static_cast<int64_t>(o.min_ms / std::max(probe, 1e-4)), 3, 100000);
      }
      for (int rep = 0; rep < o.reps; ++rep)
        for (auto& run : runs) {
          const double cpu_start = cpu_ms();
          run->ms_per_step.push_back(time_steps(*run->training, steps, what) / steps);
          run->cpu_ms_per_step.push_back((cpu_ms() - cpu_start) / steps);
        }

      const double def = median(runs[0]->ms_per_step), det = median(runs[1]->ms_per_step);
      if (runs.size() > 2) {
        const double port = median(runs[2]->ms_per_step);
        std::printf("%-14s %7d %11.4f %11.4f %11.4f %9.3f %9.3f %7lld\n", workload.c_str(), threads, def, det, port,
                    det / def, port / det, static_cast<long long>(steps));
      } else {
        std::printf("%-14s %7d %11.4f %11.4f %11s %9.3f %9s %7lld\n", workload.c_str(), threads, def, det, "-",
                    det / def, "-", static_cast<long long>(steps));
      }
      std::fflush(stdout);
      for (auto& run : runs)
        rows.push_back(
            {workload, threads, run->policy, steps, median(run->ms_per_step), median(run->cpu_ms_per_step)});
      if (o.kernels)
        for (auto& run : runs) {
          std::printf("  kernels (%s, %d thread%s):\n", run->policy.c_str(), threads, threads == 1 ? "" : "s");
          for (const auto& c : run->hooks.choices) std::printf("    %s\n", c.c_str());
        }
    }
  }
  if (o.phases) print_phases(o, registry);
  if (!o.json.empty()) write_json(o.json, rows, o);
  return 0;
}
