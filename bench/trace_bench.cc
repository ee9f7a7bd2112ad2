// What recording, reading, diffing, replaying and bisecting traces cost (issues 4 and 5, Performance), with
// every ratio measured side by side in this one process (CONVENTIONS.md). Sections:
//
//   overhead  recorded over unrecorded step time at levels step, layer, op; the trainings of a workload are
//             built together and timed in alternating repetitions (median of the per-repetition ratios)
//   profile   where the recorder's time goes on the MLP: digests, fingerprints, message building, write()
//   size      bytes per step at each level and per checkpoint (MLP, breast_cancer), read back from the trace
//   read      a 100,000-step trace read through TraceReader and by `trainrr show`, each in a child process
//             (MB/s, CPU, peak RSS), next to a 10,000-step trace: memory must not grow with the trace
//   diff      diff_traces and `trainrr diff` of two 100,000-step traces (identical, and diverging at a step)
//   replay    `replay --force all` against recording the same run, alternating (MLP, breast_cancer)
//   bisect    a 10,000-step run with checkpoints every 500 steps and one batch order changed at a seeded
//             random step; steps bisect re-executes against a full re-run
//   kernels   on a GPU only (--device cuda; not among the default sections): what gathering the kernels with
//             CUPTI costs a recording at level step, conv net and MLP, against the same recording without
//             them (record --no-kernels) and against no recording
//
//   trace_bench [--sections a,b] [--configs DIR] [--work DIR] [--reps R] [--min-ms T] [--seed S] [--keep]
//               [--device cpu|cuda|cuda:N]
//
// Every workload runs with the deterministic policy on one thread. Traces go to --work (default: a fresh
// folder under the system's temporary folder, removed at exit unless --keep).

#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/fingerprint.h"
#include "engine/hooks.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "recorder/recorder.h"
#include "replayer/bisect.h"
#include "replayer/diff.h"
#include "replayer/replayer.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

#if TRAINRR_WITH_CUDA
#include "cuda/cupti_session.h"
#include "cuda/device.h"
#include "cuda/engine_device.h"
#include "engine/device.h"
#include "recorder/kernel_source.h"
#endif

namespace fs = std::filesystem;

namespace trainrr {
namespace {

struct Options {
  std::set<std::string> sections = {"overhead", "profile", "size", "read", "diff", "replay", "bisect"};
  std::string configs = TRAINRR_BENCH_CONFIGS;  // bench/configs, set by CMake
  std::string trainrr = TRAINRR_BIN;            // the CLI, for `show` and `diff`
  std::string work;
  int reps = 7;
  double min_ms = 300;
  uint64_t seed = 2024;  // where the divergence of the bisect and diff runs goes
  bool keep = false;
  std::string device = "cpu";  // runtime.device of the kernels section
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "trace_bench: %s\n", msg.c_str());
  std::exit(1);
}

void check(const Status& s, const std::string& what) {
  if (!s.ok()) die(what + ": " + s.error().message);
}

template <typename T>
T take(Result<T> r, const std::string& what) {
  if (!r) die(what + ": " + r.error().message);
  return std::move(r).value();
}

const char* level_name(int level) {
  return level < 0 ? "none" : probe_level_name(static_cast<ProbeLevel>(level));
}

// --- running a workload, recorded or not ----------------------------------------------------------------

RunConfig workload_config(const Options& o, const std::string& workload,
                          std::vector<std::string> overrides = {}) {
  overrides.insert(overrides.begin(), {"runtime.threads=1", "runtime.policy=deterministic"});
  return take(load_config(o.configs + "/" + workload + ".toml", overrides), workload);
}

std::unique_ptr<Recorder> make_recorder(const RunConfig& config, const RecordOptions& ro) {
  auto rec = take(Recorder::create(config, ro), ro.path);
  const Isa isa = take(runtime_isa(), "runtime_isa");
  rec->set_runtime(1, isa_name(isa), config.runtime.policy);
  return rec;
}

// Passes every hook on to `inner` (a Recorder). A hook added to engine/hooks.h must be added here too.
class Forward : public Hooks {
 public:
  explicit Forward(Hooks& inner) : inner_(inner) {}
  void run_begin() override { inner_.run_begin(); }
  void run_end(bool completed) override { inner_.run_end(completed); }
  void seed(uint64_t& seed, bool from_entropy) override { inner_.seed(seed, from_entropy); }
  void rng_draw(RngDraw& draw) override { inner_.rng_draw(draw); }
  void rng_values(const RngDraw& d, std::span<const std::byte> v) override { inner_.rng_values(d, v); }
  void split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) override {
    inner_.split(site, train, test);
  }
  void shuffle(std::string_view site, int epoch, std::vector<uint32_t>& p, const RngDraw* draw) override {
    inner_.shuffle(site, epoch, p, draw);
  }
  void batch_order(int64_t step, int64_t& batch) override { inner_.batch_order(step, batch); }
  void kernel_selected(KernelChoice& choice) override { inner_.kernel_selected(choice); }
  void accumulation_order(std::string_view site, std::vector<uint32_t>& order) override {
    inner_.accumulation_order(site, order);
  }
  void accumulated(std::string_view site, const std::vector<uint32_t>& order) override {
    inner_.accumulated(site, order);
  }
  ProbeLevel probe_level() const override { return inner_.probe_level(); }
  void probe(std::string_view site, Phase phase, const Tensor& value) override {
    inner_.probe(site, phase, value);
  }
  void probe_unchanged(std::string_view site, Phase phase, const Tensor& value) override {
    inner_.probe_unchanged(site, phase, value);
  }
  void op_done(std::string_view site) override { inner_.op_done(site); }
  void step_begin(int64_t step, int epoch, int64_t batch) override { inner_.step_begin(step, epoch, batch); }
  void step_end(const StepSummary& s) override { inner_.step_end(s); }
  bool reads_step_tensors() const override { return inner_.reads_step_tensors(); }
  bool reads_drawn_values() const override { return inner_.reads_drawn_values(); }
  void epoch_end(const EpochSummary& e) override { inner_.epoch_end(e); }
  bool wants_checkpoint(int64_t steps) override { return inner_.wants_checkpoint(steps); }
  void checkpoint(const TrainState& state) override { inner_.checkpoint(state); }

 protected:
  Hooks& inner_;
};

// Records a run in which the batch of step `k` is not the one the loader proposes but another batch of the
// epoch not yet handed out (chosen with `seed`); the engine takes it, as it takes a forced batch on replay.
// The trace thus differs from what a free replay does from step k on, and only through the loader.
class PerturbBatch : public Forward {
 public:
  PerturbBatch(Hooks& inner, int64_t k, int64_t batches_per_epoch, uint64_t seed)
      : Forward(inner), k_(k), batches_(batches_per_epoch), rng_(seed) {}
  void shuffle(std::string_view site, int epoch, std::vector<uint32_t>& p, const RngDraw* draw) override {
    taken_.clear();
    Forward::shuffle(site, epoch, p, draw);
  }
  void batch_order(int64_t step, int64_t& batch) override {
    if (step == k_) {
      std::vector<int64_t> free;
      for (int64_t b = 0; b < batches_; ++b)
        if (b != batch && !taken_.count(b)) free.push_back(b);
      if (free.empty()) {
        ++k_;  // the epoch's last batch has no alternative: the next step gets the change
      } else {
        batch = free[std::uniform_int_distribution<size_t>(0, free.size() - 1)(rng_)];
        changed_at = step;
      }
    }
    taken_.insert(batch);
    Forward::batch_order(step, batch);
  }
  int64_t changed_at = -1;

 private:
  int64_t k_, batches_;
  std::mt19937_64 rng_;
  std::set<int64_t> taken_;
};

struct Recorded {
  double wall_s = 0, cpu_s = 0;
  int64_t steps = 0;
  uint64_t bytes = 0;
  int64_t changed_at = -1;  // with a perturbation
};

// Records a whole run of `config` (as `trainrr record` does); `perturb_seed` >= 0 changes one batch order.
Recorded record_run(const RunConfig& config, const RecordOptions& ro, int64_t perturb_step = -1,
                    uint64_t perturb_seed = 0) {
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  auto rec = make_recorder(config, ro);
  KernelRegistry registry;
  register_cpu_kernels(registry);
  std::unique_ptr<PerturbBatch> perturb;
  TrainingOptions to;
  to.registry = &registry;
  to.hooks = rec.get();
  // The number of batches per epoch is known only once the training exists; built twice when perturbing.
  if (perturb_step >= 0) {
    TrainingOptions probe = to;
    probe.hooks = nullptr;
    const int64_t per_epoch = take(Training::create(config, probe), "training")->steps_per_epoch();
    perturb = std::make_unique<PerturbBatch>(*rec, perturb_step, per_epoch, perturb_seed);
    to.hooks = perturb.get();
  }
  auto training = take(Training::create(config, to), ro.path);
  check(training->fit(), ro.path);
  // The final state, unless the last periodic checkpoint holds it already (as `trainrr record`).
  check(rec->finish(training->state(), true, "completed"), ro.path);
  Recorded r;
  r.wall_s = seconds_since(t0);
  r.cpu_s = cpu_seconds() - c0;
  r.steps = training->step();
  r.bytes = rec->bytes_written();
  r.changed_at = perturb ? perturb->changed_at : -1;
  return r;
}

// --- child processes: CPU time and peak RSS of one piece of work alone ----------------------------------

struct Child {
  int exit_code = -1;
  double wall_s = 0, cpu_s = 0;
  long max_rss_kb = 0;
  std::string out;  // its stdout
};

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// A value "key=..." from a child's output line.
double field(const std::string& out, const std::string& key) {
  const size_t at = out.find(key + "=");
  return at == std::string::npos ? -1 : std::atof(out.c_str() + at + key.size() + 1);
}

// Linux carries a process's peak RSS across exec (a forked copy of this process counts), so the work runs
// as a grandchild: `trace_bench --spawn CMD...` starts small, forks CMD from there and reports CMD's
// rusage on its last line of output.
int spawn(char** argv) {
  const auto t0 = Clock::now();
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return 126;
  if (pid == 0) {
    execv(argv[0], argv);
    std::fprintf(stderr, "trace_bench: cannot run %s\n", argv[0]);
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  std::printf(
      "\n@spawn exit=%d wall=%.6f cpu=%.6f rss_kb=%ld\n",
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), seconds_since(t0),
      ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6,
      ru.ru_maxrss);
  return 0;
}

Child run_child(const std::vector<std::string>& args) {
  int pipefd[2];
  if (pipe(pipefd) != 0) die("pipe failed");
  std::vector<std::string> full = {self_exe(), "--spawn"};
  full.insert(full.end(), args.begin(), args.end());
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    std::vector<char*> argv;
    for (const auto& a : full) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const size_t at = out.rfind("\n@spawn ");
  if (at == std::string::npos) die("running " + args[0] + " failed: " + out);
  Child c;
  const std::string tail = out.substr(at);
  c.out = out.substr(0, at);
  c.exit_code = static_cast<int>(field(tail, "exit"));
  c.wall_s = field(tail, "wall");
  c.cpu_s = field(tail, "cpu");
  c.max_rss_kb = static_cast<long>(field(tail, "rss_kb"));
  return c;
}

// Child: every message of a trace through TraceReader.
int child_read(const std::string& path) {
  const auto t0 = Clock::now();
  auto reader = take(trace::TraceReader::open(path), path);
  int64_t messages = 0, steps = 0, events = 0;
  for (;;) {
    auto rec = take(reader->next(), path);
    if (!rec) break;
    ++messages;
    if (auto* s = std::get_if<trace::TraceStep>(&rec->value)) {
      ++steps;
      events += static_cast<int64_t>(s->events.size());
    }
  }
  std::printf("messages=%lld steps=%lld events=%lld bytes=%llu seconds=%.6f\n",
              static_cast<long long>(messages), static_cast<long long>(steps), static_cast<long long>(events),
              static_cast<unsigned long long>(reader->file_size()), seconds_since(t0));
  return 0;
}

// Child: diff_traces of two traces.
int child_diff(const std::string& a, const std::string& b) {
  const auto t0 = Clock::now();
  DiffResult d = diff_traces(a, b);
  std::printf("exit=%d first_step=%lld seconds=%.6f %s\n", d.exit_code,
              static_cast<long long>(d.report.first ? d.report.first->step : -1), seconds_since(t0),
              d.error.c_str());
  return 0;
}

// --- overhead ------------------------------------------------------------------------------------------

void section_overhead(const Options& o) {
  std::printf("\n## Recording overhead: recorded over unrecorded step time (deterministic, 1 thread)\n\n");
  std::printf(
      "Median over %d alternating repetitions of the per-repetition ratio; wall clock and process CPU.\n\n",
      o.reps);
  std::printf(
      "| workload | steps/rep | unrecorded ms/step | level | recorded ms/step | wall ratio | CPU ratio | "
      "target |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  KernelRegistry registry;
  register_cpu_kernels(registry);
  for (const std::string workload : {"breast_cancer", "mlp", "convnet"}) {
    const RunConfig config = workload_config(o, workload);
    struct Variant {
      int level = -1;  // -1: unrecorded
      std::unique_ptr<Recorder> rec;
      std::unique_ptr<Training> training;
      std::vector<double> wall, cpu;  // seconds per step, per repetition
    };
    // Variant 0 is the baseline; variant 1 a second unrecorded training, whose ratio to the baseline is
    // the noise floor of this measurement (two instances of the same run differ in memory placement).
    constexpr int kVariants = 5;
    std::vector<Variant> vs(kVariants);
    for (int i = 0; i < kVariants; ++i) {
      Variant& v = vs[i];
      v.level = i - 2;
      TrainingOptions to;
      to.registry = &registry;
      if (v.level >= 0) {
        RecordOptions ro;
        ro.path = o.work + "/overhead-" + workload + "-" + level_name(v.level) + ".trace";
        ro.level = static_cast<ProbeLevel>(v.level);
        v.rec = make_recorder(config, ro);
        to.hooks = v.rec.get();
      }
      v.training = take(Training::create(config, to), workload);
    }
    auto run = [&](Variant& v, int64_t steps) {
      const auto t0 = Clock::now();
      const double c0 = cpu_seconds();
      check(v.training->fit(v.training->step() + steps), workload);
      return std::pair{seconds_since(t0) / steps, (cpu_seconds() - c0) / steps};
    };
    for (auto& v : vs) run(v, 5);  // kernel selection on each site's first call, caches, pages
    const double probe = run(vs[0], 3).first;
    const int64_t steps =
        std::clamp<int64_t>(static_cast<int64_t>(o.min_ms * 1e-3 / std::max(probe, 1e-7)), 3, 100000);
    for (int rep = 0; rep < o.reps; ++rep)
      for (int j = 0; j < kVariants; ++j) {  // rotate the order so that no variant always follows the same one
        Variant& v = vs[(rep + j) % kVariants];
        auto [w, c] = run(v, steps);
        v.wall.push_back(w);
        v.cpu.push_back(c);
      }
    for (int i = 1; i < kVariants; ++i) {
      std::vector<double> rw, rc;
      for (int rep = 0; rep < o.reps; ++rep) {
        rw.push_back(vs[i].wall[rep] / vs[0].wall[rep]);
        rc.push_back(vs[i].cpu[rep] / vs[0].cpu[rep]);
      }
      const int level = vs[i].level;
      const char* target = workload == "mlp" ? (level == 0 ? "≤ 1.02" : level == 2 ? "≤ 1.10" : "") : "";
      std::printf("| %s | %lld | %.4f | %s | %.4f | %.3f | %.3f | %s |\n", workload.c_str(),
                  static_cast<long long>(steps), 1e3 * median(vs[0].wall),
                  level < 0 ? "none (2nd instance: noise floor)" : level_name(level), 1e3 * median(vs[i].wall),
                  median(rw), median(rc), target);
      std::fflush(stdout);
    }
  }
}

// --- kernels (GPU) -------------------------------------------------------------------------------------

// CUPTI's activity API is process-wide while it is enabled: a training timed while another one gathers would
// pay for it too. So each repetition builds each variant's training afresh, one after the other, and the
// recording that gathers stops CUPTI (Recorder::finish) before the next variant is built. Building and the
// warm-up steps are outside the timed steps.
void section_kernels(const Options& o) {
  std::printf("\n## GPU kernels: what gathering them with CUPTI costs a recording (level step, deterministic, %s)\n\n",
              o.device.c_str());
  if (o.device == "cpu") {
    std::printf("Skipped: this section needs a GPU (--device cuda); on the CPU no kernels are gathered.\n");
    return;
  }
  std::printf("Median over %d repetitions of the per-repetition ratio (wall clock); each repetition builds the "
              "variants afresh, in rotated order.\n\n",
              o.reps);
  std::printf("| workload | steps/rep | unrecorded ms/step | variant | ms/step | over unrecorded | over recorded "
              "without kernels | target |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  KernelRegistry registry;
  register_cpu_kernels(registry);
  for (const std::string workload : {"convnet", "mlp"}) {
    const RunConfig config = workload_config(o, workload, {"runtime.device=" + o.device});
    // 0: unrecorded; 1: a second unrecorded instance (the noise floor); 2: recorded without kernels;
    // 3: recorded with them.
    constexpr int kVariants = 4;
    const char* names[kVariants] = {"unrecorded", "unrecorded (2nd: noise floor)", "recorded, no kernels",
                                    "recorded, kernels (CUPTI)"};
    std::vector<std::vector<double>> wall(kVariants);
    auto timed = [&](int variant, int64_t steps) {
      std::unique_ptr<Recorder> rec;
      TrainingOptions to;
      to.registry = &registry;
      if (variant >= 2) {
        RecordOptions ro;
        ro.path = o.work + "/kernels-" + workload + "-" + std::to_string(variant) + ".trace";
        ro.kernels = variant == 3;
        rec = make_recorder(config, ro);
        to.hooks = rec.get();
      }
      auto training = take(Training::create(config, to), workload);
      if (rec) {
        check(rec->start(), rec->path());
        if (variant == 3 && !rec->kernels_recorded())
          die(workload + ": CUPTI does not gather here: " + rec->kernels_not_recorded());
      }
      check(training->fit(5), workload);  // kernel selection on each site's first call, the allocator's cache
      const auto t0 = Clock::now();
      check(training->fit(5 + steps), workload);
      const double per_step = seconds_since(t0) / static_cast<double>(steps);
      if (rec) check(rec->finish(training->state(), true, "completed"), workload);
      return per_step;
    };
    const double probe = timed(0, 5);
    const int64_t steps =
        std::clamp<int64_t>(static_cast<int64_t>(o.min_ms * 1e-3 / std::max(probe, 1e-7)), 5, 100000);
    for (int rep = 0; rep < o.reps; ++rep)
      for (int j = 0; j < kVariants; ++j) {
        const int v = (rep + j) % kVariants;
        wall[v].push_back(timed(v, steps));
      }
    for (int v = 1; v < kVariants; ++v) {
      std::vector<double> over_unrecorded, over_plain;
      for (int rep = 0; rep < o.reps; ++rep) {
        over_unrecorded.push_back(wall[v][rep] / wall[0][rep]);
        over_plain.push_back(wall[v][rep] / wall[2][rep]);
      }
      char plain[32] = "";
      if (v == 3) std::snprintf(plain, sizeof plain, "%.3f", median(over_plain));
      std::printf("| %s | %lld | %.4f | %s | %.4f | %.3f | %s | %s |\n", workload.c_str(),
                  static_cast<long long>(steps), 1e3 * median(wall[0]), names[v], 1e3 * median(wall[v]),
                  median(over_unrecorded), plain, v == 3 && workload == "convnet" ? "≤ 1.05" : "");
      std::fflush(stdout);
    }
  }
}

// --- profile -------------------------------------------------------------------------------------------

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

// fingerprint.h's summary with eight independent accumulators in a fixed order (so still deterministic):
// what a summary that the compiler can vectorize would cost next to the sequential one.
Summary summarize_lanes(std::span<const float> v) {
  constexpr size_t L = 8;
  double sum[L] = {}, sq[L] = {};
  float lo[L], hi[L];
  uint64_t bad[L] = {};
  for (size_t l = 0; l < L; ++l) lo[l] = std::numeric_limits<float>::infinity(), hi[l] = -lo[l];
  size_t i = 0;
  for (; i + L <= v.size(); i += L)
    for (size_t l = 0; l < L; ++l) {
      const float x = v[i + l];
      const bool ok = std::isfinite(x);
      const float y = ok ? x : 0.0f;
      sum[l] += y;
      sq[l] += static_cast<double>(y) * y;
      lo[l] = ok && x < lo[l] ? x : lo[l];
      hi[l] = ok && x > hi[l] ? x : hi[l];
      bad[l] += !ok;
    }
  Summary s;
  s.count = v.size();
  s.min = std::numeric_limits<float>::infinity(), s.max = -s.min;
  for (size_t l = 0; l < L; ++l)
    s.sum += sum[l], s.sum_sq += sq[l], s.min = std::min(s.min, lo[l]), s.max = std::max(s.max, hi[l]),
                                        s.non_finite += bad[l];
  for (; i < v.size(); ++i) {
    const float x = v[i];
    if (!std::isfinite(x)) {
      ++s.non_finite;
      continue;
    }
    s.sum += x, s.sum_sq += static_cast<double>(x) * x, s.min = std::min(s.min, x),
                                                        s.max = std::max(s.max, x);
  }
  return s;
}

// Times (thread CPU) each hook the recorder receives and, apart from it, what the digests and fingerprints
// it computes cost (computed a second time, outside the timed hook).
class HookTimer : public Forward {
 public:
  using Forward::Forward;
  void probe(std::string_view site, Phase phase, const Tensor& value) override {
    double t0 = thread_cpu_seconds();
    volatile uint64_t sink = digest(value);
    hash_probe_s += thread_cpu_seconds() - t0;
    t0 = thread_cpu_seconds();
    volatile double sink2 = summarize(std::span<const float>(value.data)).sum;
    summary_s += thread_cpu_seconds() - t0;
    t0 = thread_cpu_seconds();
    sink2 = summarize_lanes(std::span<const float>(value.data)).sum;
    summary_lanes_s += thread_cpu_seconds() - t0;
    (void)sink, (void)sink2;
    t0 = thread_cpu_seconds();
    Forward::probe(site, phase, value);
    probe_s += thread_cpu_seconds() - t0;
    ++probes;
    probe_bytes += value.data.size() * sizeof(float);
  }
  // The recorder reuses the previous probe's fingerprint: nothing to hash.
  void probe_unchanged(std::string_view site, Phase phase, const Tensor& value) override {
    const double t0 = thread_cpu_seconds();
    Forward::probe_unchanged(site, phase, value);
    probe_s += thread_cpu_seconds() - t0;
    ++probes, ++unchanged;
  }
  void step_end(const StepSummary& s) override {
    double t0 = thread_cpu_seconds();
    uint64_t x = 0;
    for (const auto& [name, t] : s.params) x ^= digest(*t), digest_bytes_ += t->data.size() * sizeof(float);
    for (const auto& [name, t] : s.grads) x ^= digest(*t), digest_bytes_ += t->data.size() * sizeof(float);
    volatile uint64_t sink = x;
    (void)sink;
    digest_s += thread_cpu_seconds() - t0;
    t0 = thread_cpu_seconds();
    Forward::step_end(s);
    step_end_s += thread_cpu_seconds() - t0;
    ++steps;
  }
  void reset() {
    hash_probe_s = summary_s = summary_lanes_s = probe_s = digest_s = step_end_s = 0;
    digest_bytes_ = probe_bytes = 0;
    probes = unchanged = steps = 0;
  }
  double extra() const {
    return hash_probe_s + summary_s + summary_lanes_s + digest_s;
  }  // our own timing work
  double hash_probe_s = 0, summary_s = 0, summary_lanes_s = 0, probe_s = 0, digest_s = 0, step_end_s = 0;
  uint64_t digest_bytes_ = 0, probe_bytes = 0;
  int64_t probes = 0, unchanged = 0, steps = 0;
};

// Rewrites the step messages of `path` with a fresh TraceWriter (message building, interning, one write()
// each) and writes the same number of bytes with bare write() calls; returns both in seconds per step.
std::pair<double, double> rewrite_cost(const std::string& path, const std::string& scratch) {
  auto reader = take(trace::TraceReader::open(path), path);
  std::vector<trace::TraceStep> steps;
  std::vector<uint64_t> sizes;
  for (;;) {
    auto rec = take(reader->next(), path);
    if (!rec) break;
    if (auto* s = std::get_if<trace::TraceStep>(&rec->value); s && s->index > 0) {
      steps.push_back(std::move(*s));
      sizes.push_back(rec->size);
    }
  }
  if (steps.empty()) return {0, 0};
  trace::TraceHeader header = reader->header();
  auto writer = take(trace::TraceWriter::create(scratch, header), scratch);
  auto t0 = Clock::now();
  for (const auto& s : steps) check(writer->write_step(s), scratch);
  const double build_and_write = seconds_since(t0) / steps.size();
  writer.reset();
  FILE* f = std::fopen(scratch.c_str(), "wb");
  if (!f) die("cannot write " + scratch);
  const int fd = fileno(f);
  std::vector<char> bytes(*std::max_element(sizes.begin(), sizes.end()), 'x');
  t0 = Clock::now();
  for (uint64_t n : sizes)
    if (write(fd, bytes.data(), n) != static_cast<ssize_t>(n)) die("write to " + scratch + " failed");
  const double bare_write = seconds_since(t0) / sizes.size();
  std::fclose(f);
  return {build_and_write, bare_write};
}

void section_profile(const Options& o) {
  std::printf(
      "\n## Where the recorder's time goes (MLP, deterministic, 1 thread; thread CPU ms per step)\n\n");
  std::printf(
      "| level | step, process CPU (unrecorded part) | in recorder hooks | XXH3 of params+grads (MB) | "
      "probes, of them unchanged (MB hashed) | XXH3 of probes "
      "| probe summaries | same, 8 lanes | hooks beyond hashing and summaries | rebuild + write a step "
      "message "
      "| bare write() of its bytes |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  KernelRegistry registry;
  register_cpu_kernels(registry);
  for (ProbeLevel level : {ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op}) {
    const RunConfig config = workload_config(o, "mlp");
    RecordOptions ro;
    ro.path = o.work + std::string("/profile-mlp-") + probe_level_name(level) + ".trace";
    ro.level = level;
    auto rec = make_recorder(config, ro);
    HookTimer timer(*rec);
    TrainingOptions to;
    to.registry = &registry;
    to.hooks = &timer;
    auto training = take(Training::create(config, to), "mlp");
    check(training->fit(5), "mlp");
    timer.reset();
    const double t0 = cpu_seconds();  // the pool's thread computes the step, this one runs the hooks
    const int64_t n = 40;
    check(training->fit(5 + n), "mlp");
    const double hooks = (timer.probe_s + timer.step_end_s) / n;
    const double step = (cpu_seconds() - t0 - timer.extra()) / n - hooks;
    check(rec->finish(training->state(), true, "completed"), ro.path);
    auto [rewrite, bare] = rewrite_cost(ro.path, o.work + "/profile-rewrite.trace");
    const double beyond = hooks - (timer.digest_s + timer.hash_probe_s + timer.summary_s) / n;
    std::printf(
        "| %s | %.3f | %.4f (%.1f%%) | %.4f (%.1f) | %lld, %lld (%.1f) | %.4f | %.4f | %.4f | %.4f | %.4f | "
        "%.4f |\n",
        probe_level_name(level), 1e3 * step, 1e3 * hooks, 100 * hooks / step, 1e3 * timer.digest_s / n,
        timer.digest_bytes_ / 1e6 / n, static_cast<long long>(timer.probes / n),
        static_cast<long long>(timer.unchanged / n), timer.probe_bytes / 1e6 / n,
        1e3 * timer.hash_probe_s / n, 1e3 * timer.summary_s / n, 1e3 * timer.summary_lanes_s / n,
        1e3 * beyond, 1e3 * rewrite, 1e3 * bare);
    std::fflush(stdout);
  }
}

// --- size ----------------------------------------------------------------------------------------------

void section_size(const Options& o) {
  std::printf("\n## Trace size (deterministic, 1 thread)\n\n");
  std::printf(
      "Steady state: every message after step 0 (which carries the initialisation draws, split and kernel\n"
      "choices), epoch messages included. A shuffle is one draw in the step that starts an epoch; 'shuffle'\n"
      "is that message's size over the median step message. Target at level step: beyond shuffles ≤ 64.\n\n");
  std::printf(
      "| workload | level | steps | file bytes | step 0 bytes | bytes/step | median step message | "
      "shuffle bytes/epoch | epoch message | bytes/step beyond shuffles | bytes/checkpoint |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  struct W {
    const char* name;
    int epochs;
    int64_t checkpoint_every;
  };
  for (const W& w : {W{"mlp", 2, 32}, W{"breast_cancer", 40, 100}})
    for (ProbeLevel level : {ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op}) {
      const RunConfig config = workload_config(o, w.name, {"train.epochs=" + std::to_string(w.epochs)});
      RecordOptions ro;
      ro.path = o.work + "/size-" + w.name + "-" + probe_level_name(level) + ".trace";
      ro.level = level;
      ro.checkpoint_every = w.checkpoint_every;
      const Recorded r = record_run(config, ro);
      auto reader = take(trace::TraceReader::open(ro.path), ro.path);
      uint64_t step0 = 0, later = 0, epoch_bytes = 0, checkpoint_bytes = 0;
      int64_t later_steps = 0, epochs = 0, checkpoints = 0;
      std::vector<double> plain, with_shuffle;
      for (;;) {
        auto rec = take(reader->next(), ro.path);
        if (!rec) break;
        if (auto* s = std::get_if<trace::TraceStep>(&rec->value)) {
          if (s->index == 0) {
            step0 = rec->size;
            continue;
          }
          later += rec->size, ++later_steps;
          const bool shuffled = std::any_of(s->events.begin(), s->events.end(), [](const trace::Event& e) {
            return std::holds_alternative<trace::ShuffleEvent>(e);
          });
          (shuffled ? with_shuffle : plain).push_back(static_cast<double>(rec->size));
        } else if (std::holds_alternative<trace::TraceEpoch>(rec->value)) {
          epoch_bytes += rec->size, ++epochs;
          later += rec->size;
        } else if (std::holds_alternative<trace::TraceCheckpoint>(rec->value)) {
          checkpoint_bytes += rec->size, ++checkpoints;
        }
      }
      const double per_step = static_cast<double>(later) / std::max<int64_t>(1, later_steps);
      double shuffle = 0;
      for (double s : with_shuffle) shuffle += s - median(plain);
      const double beyond = (static_cast<double>(later) - shuffle) / std::max<int64_t>(1, later_steps);
      std::printf("| %s | %s | %lld | %llu | %llu | %.1f | %.0f | %.0f | %.0f | %.1f | %.0f (%lld) |\n",
                  w.name, probe_level_name(level), static_cast<long long>(r.steps),
                  static_cast<unsigned long long>(r.bytes), static_cast<unsigned long long>(step0), per_step,
                  median(plain), with_shuffle.empty() ? 0.0 : shuffle / with_shuffle.size(),
                  epochs ? static_cast<double>(epoch_bytes) / epochs : 0.0, beyond,
                  checkpoints ? static_cast<double>(checkpoint_bytes) / checkpoints : 0.0,
                  static_cast<long long>(checkpoints));
      std::fflush(stdout);
    }
}

// --- read, diff: long traces of the tiny workload -------------------------------------------------------

struct LongTraces {
  std::string a100k, b100k, c100k, a10k, b10k;
  int64_t changed_at = -1;
};

LongTraces long_traces(const Options& o) {
  LongTraces t;
  t.a100k = o.work + "/tiny-100k-a.trace";
  t.b100k = o.work + "/tiny-100k-b.trace";
  t.c100k = o.work + "/tiny-100k-perturbed.trace";
  t.a10k = o.work + "/tiny-10k-a.trace";
  t.b10k = o.work + "/tiny-10k-b.trace";
  if (fs::exists(t.c100k + ".changed")) {  // made earlier in this run
    std::ifstream(t.c100k + ".changed") >> t.changed_at;
    return t;
  }
  const RunConfig c100k = workload_config(o, "tiny", {"train.epochs=1000"});
  const RunConfig c10k = workload_config(o, "tiny", {"train.epochs=100"});
  std::printf("\nRecording the tiny workload's traces (level step):\n");
  std::mt19937_64 rng(o.seed);
  const int64_t k = std::uniform_int_distribution<int64_t>(1, 99999)(rng);
  for (auto [path, config, perturb] : {std::tuple{t.a100k, &c100k, false}, std::tuple{t.b100k, &c100k, false},
                                       std::tuple{t.c100k, &c100k, true}, std::tuple{t.a10k, &c10k, false},
                                       std::tuple{t.b10k, &c10k, false}}) {
    RecordOptions ro;
    ro.path = path;
    const Recorded r = perturb ? record_run(*config, ro, k, o.seed) : record_run(*config, ro);
    if (perturb) t.changed_at = r.changed_at;
    std::printf(
        "  %s: %lld steps, %llu bytes, %.2f s%s\n", fs::path(path).filename().c_str(),
        static_cast<long long>(r.steps), static_cast<unsigned long long>(r.bytes), r.wall_s,
        perturb ? (" (batch order changed at step " + std::to_string(r.changed_at) + ")").c_str() : "");
  }
  std::ofstream(t.c100k + ".changed") << t.changed_at;
  return t;
}

void section_read(const Options& o) {
  const LongTraces t = long_traces(o);
  std::printf(
      "\n## Reading a trace: TraceReader over every message, and `trainrr show` (child processes)\n\n");
  std::printf(
      "| trace | reader | steps | MB | wall s | MB/s (wall) | CPU s | MB/s (CPU) | peak RSS MiB |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  const bool have_cli = fs::exists(o.trainrr);
  for (const std::string& path : {t.a10k, t.a100k}) {
    const double mb = static_cast<double>(fs::file_size(path)) / 1e6;
    const Child c = run_child({self_exe(), "--child-read", path});
    if (c.exit_code != 0) die("reading " + path + " failed: " + c.out);
    const double s = field(c.out, "seconds");
    std::printf("| %s | TraceReader::next | %.0f | %.2f | %.3f | %.0f | %.3f | %.0f | %.1f |\n",
                fs::path(path).filename().c_str(), field(c.out, "steps"), mb, s, mb / s, c.cpu_s,
                mb / c.cpu_s, c.max_rss_kb / 1024.0);
    if (have_cli) {
      const Child show = run_child({o.trainrr, "show", path});
      std::printf("| %s | trainrr show (exit %d) | | %.2f | %.3f | %.0f | %.3f | %.0f | %.1f |\n",
                  fs::path(path).filename().c_str(), show.exit_code, mb, show.wall_s, mb / show.wall_s,
                  show.cpu_s, mb / show.cpu_s, show.max_rss_kb / 1024.0);
    }
    std::fflush(stdout);
  }
  if (!have_cli) std::printf("\n(%s not built: `show` skipped)\n", o.trainrr.c_str());
  // The floor: the same executables doing nothing.
  const Child base = run_child({self_exe(), "--help"});
  std::printf("\nPeak RSS doing nothing (`--help`): trace_bench %.1f MiB", base.max_rss_kb / 1024.0);
  if (have_cli) std::printf(", trainrr %.1f MiB", run_child({o.trainrr, "--help"}).max_rss_kb / 1024.0);
  std::printf(".\n");
}

void section_diff(const Options& o) {
  const LongTraces t = long_traces(o);
  std::printf(
      "\n## diff of two traces (child processes; target for 100,000 steps: < 1 s CPU, bounded memory)\n\n");
  std::printf(
      "| traces | differ | by | exit | first divergent step | wall s | CPU s | peak RSS MiB "
      "|\n|---|---|---|---|---|---|---|---|\n");
  const bool have_cli = fs::exists(o.trainrr);
  struct Pair {
    std::string name, a, b, differ;
  };
  const std::vector<Pair> pairs = {
      {"10,000 steps", t.a10k, t.b10k, "identical"},
      {"100,000 steps", t.a100k, t.b100k, "identical"},
      {"100,000 steps", t.a100k, t.c100k, "batch order at step " + std::to_string(t.changed_at)}};
  for (const Pair& p : pairs) {
    const Child c = run_child({self_exe(), "--child-diff", p.a, p.b});
    std::printf("| %s | %s | diff_traces | %.0f | %.0f | %.3f | %.3f | %.1f |\n", p.name.c_str(),
                p.differ.c_str(), field(c.out, "exit"), field(c.out, "first_step"), c.wall_s, c.cpu_s,
                c.max_rss_kb / 1024.0);
    if (have_cli) {
      const Child d = run_child({o.trainrr, "diff", p.a, p.b});
      std::printf("| %s | %s | trainrr diff | %d | | %.3f | %.3f | %.1f |\n", p.name.c_str(),
                  p.differ.c_str(), d.exit_code, d.wall_s, d.cpu_s, d.max_rss_kb / 1024.0);
    }
    std::fflush(stdout);
  }
}

// --- replay --------------------------------------------------------------------------------------------

void section_replay(const Options& o) {
  std::printf("\n## replay --force all against recording (level step, deterministic, 1 thread)\n\n");
  std::printf(
      "Each repetition records the run, then replays that trace; whole runs, setup included. Speed ratio:\n"
      "record time over replay time (median of the per-repetition ratios). Target ≥ 0.95.\n\n");
  std::printf(
      "| workload | steps | record s | replay s | replay speed / record speed (wall) | (CPU) "
      "|\n|---|---|---|---|---|---|\n");
  struct W {
    const char* name;
    int epochs;
  };
  const int reps = std::max(3, o.reps / 2);
  for (const W& w : {W{"mlp", 1}, W{"breast_cancer", 1000}}) {
    const RunConfig config = workload_config(o, w.name, {"train.epochs=" + std::to_string(w.epochs)});
    std::vector<double> rec_w, rep_w, rw, rc;
    int64_t steps = 0;
    for (int rep = 0; rep < reps; ++rep) {
      RecordOptions ro;
      ro.path = o.work + "/replay-" + w.name + ".trace";
      const Recorded r = record_run(config, ro);
      steps = r.steps;
      ReplayOptions opt;
      opt.trace_path = ro.path;
      opt.force = ForceSet::all();
      const auto t0 = Clock::now();
      const double c0 = cpu_seconds();
      const ReplayResult res = replay(opt);
      const double wall = seconds_since(t0), cpu = cpu_seconds() - c0;
      if (res.exit_code != 0)
        die(std::string("replay of ") + ro.path + " exited " + std::to_string(res.exit_code) + ": " +
            res.error);
      if (res.steps_executed != r.steps)
        die("replay ran " + std::to_string(res.steps_executed) + " of " + std::to_string(r.steps) + " steps");
      rec_w.push_back(r.wall_s), rep_w.push_back(wall);
      rw.push_back(r.wall_s / wall), rc.push_back(r.cpu_s / cpu);
    }
    std::printf("| %s | %lld | %.3f | %.3f | %.3f | %.3f |\n", w.name, static_cast<long long>(steps),
                median(rec_w), median(rep_w), median(rw), median(rc));
    std::fflush(stdout);
  }
}

// --- bisect --------------------------------------------------------------------------------------------

void section_bisect(const Options& o) {
  std::printf("\n## bisect: 10,000 steps, level step, checkpoints every 500, one batch order changed\n\n");
  const RunConfig config = workload_config(o, "tiny", {"train.epochs=100"});
  RecordOptions ro;
  ro.path = o.work + "/bisect-10k.trace";
  ro.checkpoint_every = 500;
  std::mt19937_64 rng(o.seed + 1);
  const int64_t k = std::uniform_int_distribution<int64_t>(1, 9999)(rng);
  const Recorded r = record_run(config, ro, k, o.seed + 1);
  BisectOptions bo;
  bo.trace_path = ro.path;
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  const BisectResult b = bisect(bo);
  const double wall = seconds_since(t0), cpu = cpu_seconds() - c0;
  std::string minimal;
  for (const auto& u : b.minimal) minimal += (minimal.empty() ? "" : ", ") + u;
  std::string window;
  for (const auto& [key, value] : b.report.facts)
    if (key == "window") window = value;
  const int64_t first = b.report.first ? b.report.first->step : -1;
  const int64_t start = first >= 0 ? first / 500 * 500 : 0;  // the checkpoint bisect resumes from
  const int64_t lockstep = 2 * (first - start + 1);
  std::printf(
      "| recorded steps | changed at step | exit | first divergent step | window | steps re-executed | "
      "of which lockstep (2 per step) | delta-debugging replays | target (≤ 2 x 500 + replays x window) | "
      "full re-run | minimal forced choices | cause | wall s | CPU s |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::printf(
      "| %lld | %lld | %d | %lld | %s | %lld | %lld | %lld | ≤ %lld | %lld | %s | %s | %.2f | %.2f |\n",
      static_cast<long long>(r.steps), static_cast<long long>(r.changed_at), b.exit_code,
      static_cast<long long>(first), window.c_str(), static_cast<long long>(b.steps_executed),
      static_cast<long long>(lockstep), static_cast<long long>(b.replays),
      static_cast<long long>(2 * 500 + b.replays * (first - start + 1)), static_cast<long long>(r.steps),
      minimal.c_str(), b.report.cause.category.c_str(), wall, cpu);
  if (b.exit_code >= 2) std::printf("\nbisect error: %s\n", b.error.c_str());
  if (b.report.first)
    std::printf("\nFirst divergence: step %lld, %s at %s: %s\n", static_cast<long long>(first),
                b.report.first->kind.c_str(), b.report.first->site.c_str(), b.report.first->detail.c_str());
  std::printf("Cause: %s: %s\n", b.report.cause.category.c_str(), b.report.cause.detail.c_str());
}

// --- command line --------------------------------------------------------------------------------------

[[noreturn]] void usage(int code) {
  std::fprintf(
      code ? stderr : stdout,
      "usage: trace_bench [--sections overhead,profile,size,read,diff,replay,bisect,kernels] [--configs DIR]\n"
      "                   [--work DIR] [--reps R] [--min-ms T] [--seed S] [--keep] [--trainrr PATH]\n"
      "                   [--device cpu|cuda|cuda:N]\n"
      "See the comment at the top of bench/trace_bench.cc.\n");
  std::exit(code);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      usage(0);
    } else if (arg == "--sections") {
      o.sections.clear();
      std::stringstream in(value());
      for (std::string s; std::getline(in, s, ',');) o.sections.insert(s);
    } else if (arg == "--configs") {
      o.configs = value();
    } else if (arg == "--work") {
      o.work = value();
    } else if (arg == "--reps") {
      o.reps = std::max(1, std::atoi(value().c_str()));
    } else if (arg == "--min-ms") {
      o.min_ms = std::atof(value().c_str());
    } else if (arg == "--seed") {
      o.seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--trainrr") {
      o.trainrr = value();
    } else if (arg == "--keep") {
      o.keep = true;
    } else if (arg == "--device") {
      o.device = value();
    } else {
      std::fprintf(stderr, "trace_bench: unknown argument: %s\n", arg.c_str());
      usage(2);
    }
  }
  return o;
}

}  // namespace
}  // namespace trainrr

int main(int argc, char** argv) {
  using namespace trainrr;
  if (argc >= 3 && std::string(argv[1]) == "--spawn") return spawn(argv + 2);
  if (argc == 3 && std::string(argv[1]) == "--child-read") return child_read(argv[2]);
  if (argc == 4 && std::string(argv[1]) == "--child-diff") return child_diff(argv[2], argv[3]);
  Options o = parse_args(argc, argv);
#if TRAINRR_WITH_CUDA
  // runtime.device = "cuda" trains through the CUDA device, and a recording there gathers its kernels with CUPTI.
  set_cuda_probe(&cuda::probe_gpu);
  set_cuda_backend(&cuda::open_cuda_device);
  set_kernel_source_factory(&cuda::open_cupti_session);
#endif
  const bool made_work = o.work.empty();
  if (made_work) {
    std::string dir = (fs::temp_directory_path() / "trace_bench-XXXXXX").string();
    if (!mkdtemp(dir.data())) die("cannot create a folder under " + fs::temp_directory_path().string());
    o.work = dir;
  } else {
    fs::create_directories(o.work);
  }
  std::printf("trace_bench: traces in %s\n", o.work.c_str());
  using Section = void (*)(const Options&);
  const std::vector<std::pair<std::string, Section>> sections = {
      {"overhead", section_overhead}, {"profile", section_profile}, {"size", section_size},
      {"read", section_read},         {"diff", section_diff},       {"replay", section_replay},
      {"bisect", section_bisect},     {"kernels", section_kernels}};
  for (const auto& [name, run] : sections)
    if (o.sections.count(name)) run(o);
  if (made_work && !o.keep) fs::remove_all(o.work);
  return 0;
}
