// `trainrr show FILE`: one screen about a trace: the run, its environment and data, its steps and
// checkpoints, its final metrics, and whether it ended cleanly. Steps are streamed, never kept: memory does
// not grow with the trace.
// `trainrr show --kernels FILE`: the GPU kernels CUPTI recorded, per op, slowest first, as Nsight Systems'
// kernel summary lists them. Memory grows with the distinct (op, kernel, shape) rows, not with the steps.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <type_traits>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "engine/memory.h"
#include "recorder/recorder.h"
#include "replayer/replayer.h"
#include "tools/commands.h"
#include "tools/run_folder.h"
#include "tools/trace_text.h"
#include "traces/run_set.h"
#include "traces/trace_reader.h"

namespace trainrr::cli {
namespace {

// printf to standard output, escaped for the terminal.
[[gnu::format(printf, 1, 2)]] void say_formatted(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string text(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(text.data(), text.size() + 1, format, again);
  va_end(again);
  std::fputs(printable(text).c_str(), stdout);
}

// An argument of say(): a string is escaped to stay on the line the format puts it on, a number passes as it
// is.
struct SayText {
  std::string text;
};
inline SayText say_arg(const char* s) { return {inline_text(s)}; }
// A string is taken whole: a NUL inside it is shown (as \x00) with what follows it, not taken for its end.
inline SayText say_arg(const std::string& s) { return {inline_text(s)}; }
template <class T>
requires std::is_arithmetic_v<T> T say_arg(T v) { return v; }
inline const char* say_value(const SayText& t) { return t.text.c_str(); }
template <class T>
T say_value(T v) {
  return v;
}

// printf to standard output of show's own format. What show prints quotes the trace's own strings (paths,
// environment values, names), which are untrusted: every string argument is shown on the line the format puts
// it on, so that a newline in a trace cannot print a line of its own (a forged "ended cleanly", say).
template <class... Args>
void say(const char* format, Args... args) {
  if constexpr (sizeof...(Args) == 0)
    say_formatted("%s", format);
  else
    say_formatted(format, say_value(say_arg(args))...);
}

struct ShowArgs {
  std::string file;
  bool kernels = false;
};

// The first few and last few values of a long sequence, and how many there were.
class Sampled {
 public:
  void add(int64_t v) {
    ++count_;
    if (first_.size() < kEach)
      first_.push_back(v);
    else {
      last_.push_back(v);
      if (last_.size() > kEach) last_.pop_front();
    }
  }
  int64_t count() const { return count_; }
  std::string text() const {
    std::string out;
    for (int64_t v : first_) out += (out.empty() ? "" : ", ") + std::to_string(v);
    if (count_ > static_cast<int64_t>(first_.size() + last_.size())) out += ", ...";
    for (int64_t v : last_) out += ", " + std::to_string(v);
    return out;
  }

 private:
  static constexpr size_t kEach = 5;
  int64_t count_ = 0;
  std::vector<int64_t> first_;
  std::deque<int64_t> last_;
};

struct StepStats {
  int64_t complete = 0;  // steps with an end
  int64_t other = 0;     // messages of events after the last step
  uint64_t events = 0;
  std::set<int> epochs;  // distinct epochs: bounded by the run's epoch count, not its steps
  std::optional<std::pair<int64_t, double>> first_loss, last_loss;
  bool initial_checkpoint = false;  // the state before the first step
  Sampled checkpoints;              // the others, by steps done
  std::optional<trace::TraceEpoch> last_epoch;
  uint64_t end_offset = 0;  // end of the last complete message
  // Where NaN or infinity first appears: in a probe (levels layer and op), and in the loss.
  struct NonFinite {
    int64_t step = 0;
    std::string site;
    Phase phase = Phase::forward;
    uint64_t count = 0, of = 0;
  };
  std::optional<NonFinite> first_non_finite;
  uint64_t probes = 0;  // probes read
  std::optional<std::pair<int64_t, double>> first_non_finite_loss;
  // Kernel choices made on the GPU (a cuBLASLt algorithm, a launch shape), the first at each site.
  std::vector<KernelChoice> gpu_choices;
  // The GPU kernels CUPTI recorded (Step.kernels), over all steps.
  uint64_t kernels = 0, unattributed_kernels = 0, dropped_records = 0;
  int64_t steps_with_kernels = 0;
};

void note_kernels(const trace::TraceStep& step, StepStats& s) {
  if (!step.kernels) return;
  ++s.steps_with_kernels;
  s.kernels += step.kernels->count;
  s.unattributed_kernels += step.kernels->unattributed;
  s.dropped_records += step.kernels->dropped;
}

std::string kernels_not_recorded(const trace::TraceHeader& h) {
  if (h.kernels_not_recorded.empty())
    return "it was not recorded with CUPTI (a run on the CPU, or a trainrr that predates kernel records)";
  if (h.kernels_not_recorded == kKernelsNotAsked) return "the recording asked for none (trainrr record --no-kernels)";
  return "CUPTI did not record them: " + h.kernels_not_recorded;
}

void print_kernels_line(const trace::TraceHeader& h, const StepStats& s) {
  if (!h.kernels_recorded) {
    // A CPU trace says nothing of GPU kernels; a GPU run that could not record them says why.
    if (!h.kernels_not_recorded.empty()) say("GPU kernels: not recorded: %s\n", h.kernels_not_recorded);
    return;
  }
  say("GPU kernels: %llu in %lld step%s", static_cast<unsigned long long>(s.kernels),
      static_cast<long long>(s.steps_with_kernels), s.steps_with_kernels == 1 ? "" : "s");
  if (s.unattributed_kernels) say(", %llu launched outside every op", static_cast<unsigned long long>(s.unattributed_kernels));
  if (s.dropped_records)
    say(", CUPTI dropped %llu record%s (kernels are missing)", static_cast<unsigned long long>(s.dropped_records),
        s.dropped_records == 1 ? "" : "s");
  say(" (show --kernels lists them)\n");
}

void note_gpu_choices(const trace::TraceStep& step, StepStats& s) {
  for (const auto& e : step.events) {
    const auto* k = std::get_if<KernelChoice>(&e);
    if (!k || (k->blaslt.empty() && k->cudnn.empty() && !k->launch)) continue;
    if (std::none_of(s.gpu_choices.begin(), s.gpu_choices.end(), [&](const KernelChoice& c) { return c.site == k->site; }))
      s.gpu_choices.push_back(*k);
  }
}

void print_gpu_choices(const StepStats& s) {
  if (s.gpu_choices.empty()) return;
  say("GPU kernel choices: %zu site%s\n", s.gpu_choices.size(), s.gpu_choices.size() == 1 ? "" : "s");
  for (const KernelChoice& k : s.gpu_choices) {
    std::string what;
    const std::string candidates =
        std::to_string(k.candidates.size()) + " candidate" + (k.candidates.size() == 1 ? "" : "s");
    if (const BlasLtAlgo* a = chosen_blaslt_algo(k))
      what = ": " + blaslt_describe(*a) + " (cuBLASLt " + std::to_string(k.blaslt_version) + ", " +
             (has_conv_im2col_candidate(k) ? "inside im2col, " : "") + candidates + ")";
    if (const CudnnEngine* e = chosen_cudnn_engine(k))
      what = ": " + cudnn_describe(*e) + " (cuDNN " + std::to_string(k.cudnn_version) + ", " +
             (has_conv_im2col_candidate(k) ? candidates
                                           : std::to_string(k.candidates.size()) + " engine" +
                                                 (k.candidates.size() == 1 ? "" : "s")) +
             ")";
    if (k.tf32) what += ", TF32";
    if (k.launch)
      what += (what.empty() ? ": " : ", ") + std::string("launched as ") + std::to_string(k.launch->grid_x) + "x" +
              std::to_string(k.launch->grid_y) + "x" + std::to_string(k.launch->grid_z) + " blocks of " +
              std::to_string(k.launch->block_x) + "x" + std::to_string(k.launch->block_y) + "x" +
              std::to_string(k.launch->block_z);
    say("  %s -> %s (%s)%s\n", k.site, k.chosen, k.reason, what);
  }
}

void note_non_finite(const trace::TraceStep& step, StepStats& s) {
  for (const auto& e : step.events) s.probes += std::holds_alternative<trace::ProbeEvent>(e);
  if (!s.first_non_finite) {
    for (const auto& e : step.events) {
      const auto* p = std::get_if<trace::ProbeEvent>(&e);
      if (!p || p->fingerprint.summary.non_finite == 0) continue;
      s.first_non_finite = StepStats::NonFinite{step.index, p->site, p->phase, p->fingerprint.summary.non_finite,
                                                p->fingerprint.summary.count};
      break;
    }
  }
  if (!s.first_non_finite_loss && step.end && !std::isfinite(step.end->loss))
    s.first_non_finite_loss.emplace(step.index, step.end->loss);
}

void print_non_finite(const StepStats& s, ProbeLevel level) {
  say("non-finite values: ");
  if (s.first_non_finite) {
    const StepStats::NonFinite& n = *s.first_non_finite;
    say("first at step %lld, %s (%s): %llu of %llu values are NaN or infinite\n",
                static_cast<long long>(n.step), n.site, phase_name(n.phase),
                static_cast<unsigned long long>(n.count), static_cast<unsigned long long>(n.of));
  } else if (level != ProbeLevel::step && s.probes > 0) {
    say("none in any probe\n");
  } else if (level != ProbeLevel::step) {
    say(s.first_non_finite_loss ? "in the loss (no probe was read)\n"
                                : "none in the loss (no probe was read)\n");
  } else if (!s.first_non_finite_loss) {
    say("none in the loss (a level-step trace holds no probes)\n");
  } else {
    say("in the loss (a level-step trace holds no probes: record with --level op to find the op)\n");
  }
  if (s.first_non_finite_loss)
    say("  loss: first non-finite at step %lld (%g)\n", static_cast<long long>(s.first_non_finite_loss->first),
                shown_number(s.first_non_finite_loss->second));
}

void print_run(const std::string& file, const trace::TraceReader& r) {
  const trace::TraceHeader& h = r.header();
  say("trace: %s (%s)\n", file, human_bytes(r.file_size()));
  // A recording's new rank trace (.trainrr-PID-N.trr.part) is not yet, or never (its recording killed), its
  // run's rankR.trr: the folder it sits in holds another run.
  if (h.world_size > 0 && trace::pending_trace_pid(std::filesystem::path(file).filename().string()))
    say("rank %d of the %d-rank run %s (a recording's rank trace, renamed rank%d.trr only if its run ends; a "
        "killed recording's keeps this name; replay, diff and bisect take a folder of the run's rank "
        "traces)\n",
        h.rank, h.world_size, h.run_id, h.rank);
  else if (h.world_size > 0)
    say("rank %d of the %d-rank run %s (replay, diff and bisect take the run's folder)\n", h.rank,
        h.world_size, h.run_id);
  say("run:\n");
  say("  config: %s", h.config_path.empty() ? "(text)" : h.config_path);
  for (const auto& o : h.config_overrides) say(" --set %s", o);
  say("\n  seed: %llu (%s)\n", static_cast<unsigned long long>(h.seed),
      !seed_follows_config(h, file) ? "the header's, which the configuration in the trace does not give"
      : h.seed_from_entropy         ? "drawn from the OS: the configuration gives none"
                                    : "from the configuration");
  say("  level: %s, ", probe_level_name(h.level));
  if (h.checkpoint_every > 0)
    say("checkpoint every %lld step%s\n", static_cast<long long>(h.checkpoint_every),
                h.checkpoint_every == 1 ? "" : "s");
  else
    say("no periodic checkpoints (the initial and final states only)\n");
  say("  writer: trainrr %s, format %u, needs reader version %u or later\n", h.writer_version,
      h.format_version, h.min_reader_version);
}

void print_environment(const trace::TraceHeader& h) {
  std::map<std::string, std::string> env(h.environment.begin(), h.environment.end());
  auto take = [&env](const std::string& key) {
    auto it = env.find(key);
    if (it == env.end()) return std::string("?");
    std::string v = it->second;
    env.erase(it);
    return v;
  };
  say("environment:\n");
  const std::string model = take("cpu.model"), cores = take("cpu.cores"), flags = take("cpu.flags");
  say("  cpu: %s, %s cores, flags: %s\n", model, cores, flags);
  const std::string isa = take("isa"), threads = take("threads"), policy = take("policy");
  say("  isa: %s, threads: %s, policy: %s\n", isa, threads, policy);
  const std::string host = take("host"), os = take("os"), kernel = take("kernel");
  say("  host: %s, os: %s, kernel %s\n", host, os, kernel);
  // Where the run ran, and whether the trainrr that recorded it could have run it on a GPU. A trace written
  // before these were recorded has neither; its "cuda" entry said "not built" whatever the build: not shown.
  env.erase("cuda");
  const std::string backend =
      env.count("cuda.backend") ? "; CUDA backend: " + take("cuda.backend") : std::string();
  std::string gpu;
  if (env.count("gpu.name")) {
    const std::string name = take("gpu.name"), cc = take("gpu.compute_capability"),
                      sms = take("gpu.sm_count");
    const std::string driver = take("cuda.driver"), runtime = take("cuda.runtime");
    gpu = name + ", compute capability " + cc + ", " + sms + " SMs; CUDA driver " + driver + ", runtime " +
          runtime;
  }
  if (env.count("device")) {
    const std::string device = take("device");
    // On a GPU the backend was there; on the CPU, whether it was says what this trainrr could have run.
    say("  device: %s%s\n", device, gpu.empty() ? backend : (" (" + gpu + ")"));
  } else if (!gpu.empty()) {
    say("  gpu: %s\n", gpu);
  }
  const std::string compiler = take("compiler");
  // The flags as CMake joins them (its general flags, empty or not, then the build type's), without the
  // spaces at either end.
  std::string cflags = take("compiler.flags");
  cflags.erase(0, cflags.find_first_not_of(' '));
  cflags.erase(cflags.find_last_not_of(' ') + 1);
  say("  compiler: %s, flags: %s\n", compiler, cflags.empty() ? std::string("(none)") : cflags);
  // In the order the recorder wrote them: it lists trainrr's own version first.
  std::string libs, vars;
  for (const auto& [key, value] : h.environment) {
    if (!env.count(key)) continue;
    if (key.rfind("lib.", 0) == 0)
      libs += (libs.empty() ? "" : ", ") + key.substr(4) + " " + value;
    else if (key.rfind("env.", 0) == 0)
      vars += (vars.empty() ? "" : " ") + key.substr(4) + "=" + value;
    else
      continue;
    env.erase(key);
  }
  say("  libraries: %s\n", libs.empty() ? "(none recorded)" : libs);
  say("  numerics environment: %s\n", vars.empty() ? "(none set)" : vars);
  for (const auto& [k, v] : env) say("  %s: %s\n", k, v);
}

void print_data(const trace::TraceHeader& h) {
  say("data:\n");
  if (h.datasets.empty()) say("  (no files: synthetic data)\n");
  for (const auto& d : h.datasets)
    say("  %s: %s, %s, xxh3-128 %s, %s\n", d.name, d.path, human_bytes(d.size_bytes), hex128(d.digest),
        d.is_embedded() ? "embedded" : "not embedded");
}

void print_progress(const StepStats& s, const trace::TraceHeader& h) {
  say("steps: %lld", static_cast<long long>(s.complete));
  if (!s.epochs.empty()) {
    say(" in %zu epoch%s (%s..%s", s.epochs.size(), s.epochs.size() == 1 ? "" : "s",
        epoch_number(*s.epochs.begin()), epoch_number(*s.epochs.rbegin()));
    // An epoch whose steps began but whose end the trace does not hold (a run cut, killed or stopped in it).
    if (!s.last_epoch || s.last_epoch->epoch < *s.epochs.rbegin())
      say("; epoch %s unfinished", epoch_number(*s.epochs.rbegin()));
    say(")");
  }
  say(", %llu events", static_cast<unsigned long long>(s.events));
  if (s.other)
    say(", %lld message%s of events after the last step", static_cast<long long>(s.other),
                s.other == 1 ? "" : "s");
  say("\n");
  if (s.first_loss)
    say("  loss: %.6g at step %lld, %.6g at step %lld\n", shown_number(s.first_loss->second),
                static_cast<long long>(s.first_loss->first), shown_number(s.last_loss->second),
                static_cast<long long>(s.last_loss->first));
  // A checkpoint's step is the count of steps done: the one at step 50 holds the state after steps 0..49.
  const int64_t checkpoints = s.checkpoints.count() + (s.initial_checkpoint ? 1 : 0);
  if (checkpoints == 0) {
    say("checkpoints: none\n");
  } else {
    say("checkpoints: %lld", static_cast<long long>(checkpoints));
    if (s.initial_checkpoint) say(": the initial state%s", s.checkpoints.count() ? "," : "");
    if (s.checkpoints.count())
      say("%safter %s step%s", s.initial_checkpoint ? " " : ", ", s.checkpoints.text(),
          s.checkpoints.text() == "1" ? "" : "s");
    say("\n");
  }
  if (s.last_epoch) {
    // A rank of a data-parallel run records the metrics of its own shards.
    if (h.world_size > 1)
      say("final metrics (epoch %s, rank %d's shards):", epoch_number(s.last_epoch->epoch), h.rank);
    else
      say("final metrics (epoch %s):", epoch_number(s.last_epoch->epoch));
    for (const auto& [k, v] : s.last_epoch->logs) say(" %s %.6g", k, shown_number(v));
    say("\n");
  } else {
    say("final metrics: none (no epoch completed)\n");
  }
}

// One row of the kernel table: the launches of one kernel, in one shape, by one op.
struct KernelRowKey {
  std::string site, name;
  std::array<uint32_t, 3> grid{}, block{};
  bool operator<(const KernelRowKey& o) const {
    return std::tie(site, name, grid, block) < std::tie(o.site, o.name, o.grid, o.block);
  }
};
struct KernelRowTimes {
  uint64_t count = 0;
  uint64_t total_ns = 0;
  uint64_t min_ns = std::numeric_limits<uint64_t>::max(), max_ns = 0;
};

std::string shape_text(const std::array<uint32_t, 3>& v) {
  return std::to_string(v[0]) + "x" + std::to_string(v[1]) + "x" + std::to_string(v[2]);
}

int run_show_kernels(const ShowArgs& a) {
  if (trace::is_run_folder(a.file)) {
    print_error(a.file + " is the folder of a data-parallel run: show --kernels reads one rank's trace (" +
                trace::rank_trace_path(a.file, 0) + ")");
    return kBadInput;
  }
  auto opened = trace::TraceReader::open(a.file, trace::without_payloads());
  if (!opened) {
    print_error(opened.error().message);
    return kBadInput;
  }
  trace::TraceReader& r = **opened;
  const trace::TraceHeader& h = r.header();
  if (!h.kernels_recorded) {
    say("%s holds no GPU kernel records: %s\n", a.file, kernels_not_recorded(h));
    return kOk;
  }
  std::map<KernelRowKey, KernelRowTimes> rows;
  StepStats s;
  int64_t steps = 0;
  std::optional<Error> stopped;
  for (;;) {
    auto rec = r.next();
    if (!rec) {
      stopped = rec.error();
      break;
    }
    if (!*rec) break;
    const auto* step = std::get_if<trace::TraceStep>(&(*rec)->value);
    if (!step) continue;
    ++steps;
    note_kernels(*step, s);
    if (!step->kernels) continue;
    for (const trace::KernelLaunch& l : step->kernels->launches) {
      KernelRowTimes& row = rows[{l.site, l.name, {l.grid_x, l.grid_y, l.grid_z}, {l.block_x, l.block_y, l.block_z}}];
      ++row.count;
      row.total_ns += l.duration_ns;
      row.min_ns = std::min(row.min_ns, l.duration_ns);
      row.max_ns = std::max(row.max_ns, l.duration_ns);
    }
  }
  say("%s: %llu GPU kernel%s in %lld of %lld step%s", a.file, static_cast<unsigned long long>(s.kernels),
      s.kernels == 1 ? "" : "s", static_cast<long long>(s.steps_with_kernels), static_cast<long long>(steps),
      steps == 1 ? "" : "s");
  // Level step keeps no list to find them in.
  if (s.unattributed_kernels && h.level == ProbeLevel::step)
    say(", %llu launched outside every op", static_cast<unsigned long long>(s.unattributed_kernels));
  else if (s.unattributed_kernels)
    say(", %llu launched outside every op (listed under %s)",
        static_cast<unsigned long long>(s.unattributed_kernels), std::string(trace::kUnattributedSite));
  say("\n");
  if (s.dropped_records)
    say("CUPTI dropped %llu activity record%s (its buffers were full): those kernels are missing %s\n",
        static_cast<unsigned long long>(s.dropped_records), s.dropped_records == 1 ? "" : "s",
        h.level == ProbeLevel::step ? "from the counts" : "below");
  if (h.level == ProbeLevel::step) {
    say("recorded at level step: each step keeps its kernel count and the digest of its kernel sequence, not the "
        "kernels; record at level layer or op for the kernels of each op\n");
  } else if (rows.empty()) {
    say("no kernel launches recorded\n");
  } else {
    using Row = std::pair<const KernelRowKey, KernelRowTimes>;
    std::vector<const Row*> order;
    uint64_t total = 0;
    for (const Row& row : rows) {
      order.push_back(&row);
      total += row.second.total_ns;
    }
    // Slowest first, as a profiler's summary; ties in the order of the key, so the table is the same every time.
    std::stable_sort(order.begin(), order.end(),
                     [](const Row* x, const Row* y) { return x->second.total_ns > y->second.total_ns; });
    // The op column as wide as its longest site, up to a bound: a site is the trace's string, untrusted.
    size_t site_width = 2;
    for (const Row* row : order) site_width = std::max(site_width, std::min<size_t>(row->first.site.size(), 48));
    say("%8s %16s %9s %14s %12s %12s %-12s %-12s %-*s %s\n", "Time(%)", "Total (ns)", "Count", "Avg (ns)", "Min (ns)",
        "Max (ns)", "Grid", "Block", static_cast<int>(site_width), "Op", "Kernel");
    for (const Row* row : order) {
      const KernelRowKey& k = row->first;
      const KernelRowTimes& t = row->second;
      const double share = total ? 100.0 * static_cast<double>(t.total_ns) / static_cast<double>(total) : 0.0;
      say("%8.1f %16llu %9llu %14.1f %12llu %12llu %-12s %-12s %-*s %s\n", share,
          static_cast<unsigned long long>(t.total_ns), static_cast<unsigned long long>(t.count),
          static_cast<double>(t.total_ns) / static_cast<double>(t.count),
          static_cast<unsigned long long>(t.min_ns), static_cast<unsigned long long>(t.max_ns),
          shape_text(k.grid), shape_text(k.block), static_cast<int>(site_width), k.site, k.name);
    }
  }
  if (stopped) {
    const trace::ReadStop& stop = *r.stopped();
    // A cut is what a killed recording leaves; any other stop is a file changed after it was written.
    say("%s: reading stopped at byte %llu: %s\n", stop.truncated ? "did not end cleanly" : "damaged",
        static_cast<unsigned long long>(stop.offset), stop.why);
    if (stop.truncated && !r.ended_cleanly()) return kOk;  // a killed recording: what was read is listed
    print_error(stopped->message);
    return kBadInput;
  }
  return kOk;
}

int run_show(const ShowArgs& a) {
  if (a.kernels) return run_show_kernels(a);
  if (trace::is_run_folder(a.file)) return show_run_folder(a.file);
  // A summary: checkpoint tensors and embedded data are checked from their frame headers, never decompressed.
  auto opened = trace::TraceReader::open(a.file, trace::without_payloads());
  if (!opened) {
    print_error(opened.error().message);
    return kBadInput;
  }
  trace::TraceReader& r = **opened;
  print_run(a.file, r);
  print_environment(r.header());
  print_data(r.header());
  // A header whose seed its configuration does not give was changed after it was written: said last.
  const Status seed_agrees = seed_follows_config(r.header(), a.file);

  StepStats s;
  s.end_offset = r.header_size();
  std::optional<Error> stopped;
  for (;;) {
    auto rec = r.next();
    if (!rec) {
      stopped = rec.error();
      break;
    }
    if (!*rec) break;
    const trace::TraceRecord& m = **rec;
    s.end_offset = m.offset + m.size;
    if (const auto* step = std::get_if<trace::TraceStep>(&m.value)) {
      s.events += step->events.size();
      note_non_finite(*step, s);
      note_gpu_choices(*step, s);
      note_kernels(*step, s);
      if (!step->end) {
        ++s.other;
        continue;
      }
      ++s.complete;
      s.epochs.insert(step->epoch);
      if (!s.first_loss) s.first_loss.emplace(step->index, step->end->loss);
      s.last_loss.emplace(step->index, step->end->loss);
    } else if (const auto* e = std::get_if<trace::TraceEpoch>(&m.value)) {
      s.last_epoch = *e;
    } else if (const auto* c = std::get_if<trace::TraceCheckpoint>(&m.value)) {
      if (c->step == 0)
        s.initial_checkpoint = true;
      else
        s.checkpoints.add(c->step);
    }
  }
  print_progress(s, r.header());
  print_non_finite(s, r.header().level);
  print_gpu_choices(s);
  print_kernels_line(r.header(), s);
  if (!r.notes().empty())
    say("notes: %zu thing%s this reader does not know were skipped; first: %s\n", r.notes().size(),
        r.notes().size() == 1 ? "" : "s", r.notes().front());
  if (const auto& live = r.still_recording()) say("note: %s\n", live->c_str());

  if (stopped) {
    const trace::ReadStop& stop = *r.stopped();
    // A cut is what a killed recording leaves; any other stop is a file changed after it was written.
    say("%s: %lld complete step%s readable; reading stopped at byte %llu: %s\n",
        stop.truncated ? "did not end cleanly" : "damaged", static_cast<long long>(s.complete),
        s.complete == 1 ? "" : "s", static_cast<unsigned long long>(stop.offset), stop.why);
    if (stop.truncated && !r.ended_cleanly())
      return kOk;  // what a killed recording leaves: a clean partial read
    print_error(stopped->message);
    return kBadInput;
  }
  if (!seed_agrees) {
    print_error(seed_agrees.error().message);
    return kBadInput;
  }
  if (const auto& f = r.footer()) {
    // The reader checks a completed run's steps against the schedule its configuration makes; a configuration
    // this trainrr cannot read leaves the footer's word unchecked, and show says so.
    std::string unread;
    if (f->completed) {
      const trace::TraceHeader& h = r.header();
      if (auto c = parse_config(h.config, "the configuration in the trace", "", h.config_overrides); !c)
        unread = " (as its footer says: this trainrr cannot read the configuration in the trace (" +
                 c.error().message + "), so the steps it schedules are not checked)";
    }
    say("ended cleanly: %s (%s), %lld step%s, %llu event%s, %zu checkpoint%s%s\n",
        f->completed ? "the run completed" : "the run stopped early", f->end_reason,
        static_cast<long long>(f->step_count), f->step_count == 1 ? "" : "s",
        static_cast<unsigned long long>(f->event_count), f->event_count == 1 ? "" : "s",
        f->checkpoints.size(), f->checkpoints.size() == 1 ? "" : "s", unread);
  } else if (r.still_recording()) {
    say("still being recorded: %lld complete step%s readable so far, to byte %llu\n",
                static_cast<long long>(s.complete), s.complete == 1 ? "" : "s",
                static_cast<unsigned long long>(s.end_offset));
  } else {
    say(
        "did not end cleanly: %lld complete step%s readable; the file ends at byte %llu after a complete "
        "message, with no footer (the recording was killed or crashed)\n",
        static_cast<long long>(s.complete), s.complete == 1 ? "" : "s",
        static_cast<unsigned long long>(s.end_offset));
  }
  return kOk;
}

}  // namespace

void add_show_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<ShowArgs>();
  CLI::App* cmd = app.add_subcommand(
      "show",
      "Summarize a trace on one screen: run, environment, data, steps, checkpoints, final metrics,\n"
      "and whether the recording ended cleanly. With --kernels: the GPU kernels CUPTI recorded.\n"
      "Exit codes: 0 read (a killed recording or one still running included), 2 not a trace or damaged.");
  cmd->add_option("file", args->file,
                  "Trace file, or the folder of a run recorded under mpirun (every rank listed; --kernels\n"
                  "reads one rank's trace, FOLDER/rankR.trr)")
      ->required();
  cmd->add_flag("--kernels", args->kernels,
                "List the GPU kernels CUPTI recorded, one row per op, kernel and launch shape, slowest first:\n"
                "share of the time, total, count, average, minimum and maximum duration (ns), grid, block,\n"
                "op, kernel (as CUPTI names it, mangled). Kernels no op launched are listed under\n"
                "(unattributed). A trace at level step keeps counts only; one without kernel records says why");
  cmd->callback(
      [args, &exit_code] { exit_code = refused_under_mpirun("show") ? kBadInput : run_show(*args); });
}

}  // namespace trainrr::cli
