// `trainrr record CONFIG -o FILE`: trains exactly as `train` does and writes the trace.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/device_backend.h"
#include "engine/fingerprint.h"
#include "engine/kernels/kernel_registry.h"
#include "recorder/recorder.h"
#include "tools/commands.h"
#include "tools/openblas_core.h"
#include "tools/run_common.h"
#include "tools/trace_text.h"
#include "traces/run_set.h"
#include "traces/trace_lock.h"
#include "traces/trace_reader.h"
#if TRAINRR_WITH_MPI
#include "distributed/mpi_collective.h"
#endif

namespace trainrr::cli {
namespace {

std::atomic<bool> g_interrupted{false};
// This process's place in a data-parallel run (run_record_rank), else a run of its own.
int g_rank = 0, g_world = 0;
// Under mpirun: what keep_openblas_within_isa() said before MPI started (run_record_rank).
std::vector<std::string> g_openblas_notes;
std::string g_run_id;
Collective* g_comm = nullptr;
std::atomic<int> g_signal{
    0};  // the signal that stopped the run: the exit code is 128 plus it, as the shell's
extern "C" void on_signal(int sig) {
  g_signal.store(sig);
  g_interrupted.store(true);
}

struct RecordArgs {
  std::string config;
  std::string output;
  std::string level = "step";
  int64_t checkpoint_every = 0;
  bool embed_data = false;
  bool no_kernels = false;
  std::vector<std::string> overrides;
};

int run_record(const RecordArgs& a);

// "rank 2: " before a message of one rank of a data-parallel run.
std::string rank_prefix() { return g_comm ? "rank " + std::to_string(g_rank) + ": " : ""; }

// Whether the progress bar's redrawn line reaches a terminal. Under mpirun a rank writes to a pseudo-terminal
// that mpirun reads and copies to its own output, whatever that is (a log file, say): what counts is
// mpirun's output, that of the rank's parent (mpirun, which starts the ranks of its own machine, or the
// daemon that starts them on another).
bool progress_reaches_a_terminal() {
  if (!isatty(STDOUT_FILENO)) return false;
  if (!g_comm) return true;
  const std::string parent = "/proc/" + std::to_string(getppid()) + "/fd/1";
  std::error_code ec;
  const std::string target = std::filesystem::read_symlink(parent, ec).string();
  return !ec && (target.starts_with("/dev/pts/") || target.starts_with("/dev/tty"));
}

#if TRAINRR_WITH_MPI
// "rank 2" or "ranks 0, 1, 3".
std::string ranks_text(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

// Every rank of a run runs one configuration, with one -o and one --level: a rank started with others
// (mpirun's MPMD form, `-n 2 trainrr record A : -n 2 trainrr record A --set ...`, or a configuration file
// that differs between machines) would train another run under the run's id, or wait forever in an allreduce
// that the other ranks run another way. The ranks compare a digest of what they run before anything is
// written; its threads, device and data paths may differ from machine to machine (the data is compared by its
// digest in each rank's trace). -1 when they agree; otherwise every rank returns 2, and each rank that cannot
// read its configuration, or whose configuration differs from rank 0's, says so; where the data alone
// differs, rank 0 names each rank's files.
int ranks_agree(const Result<RunConfig>& config, const RecordArgs& a) {
  auto& c = *static_cast<MpiCollective*>(g_comm);
  if (c.max(config.ok() ? 0 : 1)) {
    const bool all_failed = c.max(config.ok() ? 1 : 0) == 0;
    if (!config.ok() && (!all_failed || g_rank == 0))  // the same error on every rank: said once
      print_error((all_failed ? "" : rank_prefix()) + config.error().message);
    return kBadInput;
  }
  // Its data files, by digest: a file that differs between machines would train each rank on other rows.
  auto data = describe_datasets(config.value().data, false);
  if (c.max(data.ok() ? 0 : 1)) {
    const bool all_failed = c.max(data.ok() ? 1 : 0) == 0;
    if (!data.ok() && (!all_failed || g_rank == 0))
      print_error((all_failed ? "" : rank_prefix()) + data.error().message);
    return kBadInput;
  }
  std::string run = std::filesystem::path(a.output).parent_path().string() + '\n' + a.level + '\n', rows;
  for (const auto& [key, value] : flatten_config(config.value()))
    if (key != "runtime.threads" && key != "runtime.device" && key != "data.path" && key != "data.labels")
      run += key + '=' + value + '\n';
  std::string files;
  for (const trace::DatasetInfo& d : data.value()) {
    char digest[40];
    std::snprintf(digest, sizeof digest, "%016" PRIx64 "%016" PRIx64, d.digest.high, d.digest.low);
    rows += d.name + '=' + digest + '\n';
    files += (files.empty() ? "" : ", ") + d.path + " (" + std::to_string(d.size_bytes) + " bytes, digest " +
             digest + ")";
  }
  const uint64_t mine = digest_bytes(run.data(), run.size()),
                 mine_data = digest_bytes(rows.data(), rows.size());
  const bool differs = c.broadcast(mine) != mine, data_differs = c.broadcast(mine_data) != mine_data;
  if (!c.max(differs || data_differs ? 1 : 0)) return -1;
  std::string sets;
  for (const std::string& s : a.overrides) sets += " --set " + s;
  // Every rank's data files, on every rank (all of them take part, whatever differs on each).
  const std::vector<std::string> every_files = c.allgather(files);
  if (differs)
    print_error(rank_prefix() + "its run differs from rank 0's (this rank: " + a.config + sets + ", -o " +
                std::filesystem::path(a.output).parent_path().string() + ", --level " + a.level +
                "): every rank of a run must be started with the same configuration, --set, -o and --level");
  if (c.max(differs ? 1 : 0) == 0 && g_rank == 0) {
    // The data alone differs: which ranks read what, once, each file with its digest, so that the copy that
    // differs is plain whichever rank reads it.
    std::vector<std::pair<std::string, std::vector<int>>> groups;
    for (int r = 0; r < static_cast<int>(every_files.size()); ++r) {
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const auto& g) { return g.first == every_files[r]; });
      if (it == groups.end())
        groups.push_back({every_files[r], {r}});
      else
        it->second.push_back(r);
    }
    std::string who;
    for (const auto& [read, ranks] : groups)
      who +=
          (who.empty() ? "" : "; ") + ranks_text(ranks) + (ranks.size() == 1 ? " reads " : " read ") + read;
    print_error("the ranks' data differs: " + who + "; every rank of a run trains on the same data");
  }
  return kBadInput;
}

// Every rank of a run runs its allreduce the same way: ranks whose Open MPI reads other allreduce settings
// (an MCA parameter set for some ranks alone, by mpirun's -x or --mca per application context, or another
// openmpi-mca-params.conf on one machine) would run other algorithms in one MPI_Allreduce, and wait for each
// other forever or corrupt its sums. The settings each rank reads through MPI_T, and records in its header,
// are compared before any allreduce, by an allgather, which those settings do not change. -1 when they agree;
// otherwise every rank returns 2, and rank 0 names each setting that differs, with every rank's value.
int allreduce_settings_agree(MpiCollective& c, const std::string& output) {
  const CollectiveSettings s = c.settings();
  // Without dynamic rules Open MPI's fixed decision table picks the algorithm, and the forced algorithm, its
  // segment size and a rules file are not read: ranks that differ only there run their allreduce alike. Each
  // rank sends the values it reads; the ranks compare them with those three left out where dynamic rules are
  // off.
  const std::vector<std::pair<std::string, std::string>> mine = {
      {"coll_tuned_use_dynamic_rules", s.dynamic_rules ? "true" : "false"},
      {"coll_tuned_allreduce_algorithm", std::to_string(s.forced_algorithm)},
      {"coll_tuned_allreduce_algorithm_segmentsize", std::to_string(s.segment_bytes)},
      {"coll", s.components},
      {"coll_tuned_dynamic_rules_filename", s.rules_file},
      {"coll components' priorities", s.priorities}};
  const auto read_only_with_dynamic_rules = [](size_t k) { return k == 1 || k == 2 || k == 4; };
  std::string text;
  for (const auto& [key, value] : mine) text += key + '=' + value + '\n';
  const std::vector<std::string> all = c.allgather(text);
  // Each rank's value of each setting, from its lines.
  std::vector<std::vector<std::string>> values(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    size_t at = 0;
    for (size_t k = 0; k < mine.size(); ++k) {
      const size_t end = all[r].find('\n', at);
      const std::string line = all[r].substr(at, end == std::string::npos ? std::string::npos : end - at);
      values[r].push_back(line.substr(std::min(line.size(), mine[k].first.size() + 1)));
      at = end == std::string::npos ? all[r].size() : end + 1;
    }
  }
  auto in_use = [&](size_t r) {
    std::vector<std::string> v = values[r];
    if (v[0] != "true")
      for (size_t k = 0; k < v.size(); ++k)
        if (read_only_with_dynamic_rules(k)) v[k].clear();
    return v;
  };
  const std::vector<std::string> first = in_use(0);
  bool agree = true;
  for (size_t r = 1; r < all.size(); ++r) agree = agree && in_use(r) == first;
  if (agree) return -1;
  if (c.rank() != 0) return kBadInput;
  // Where some rank reads dynamic rules, the settings read only with them are named wherever they differ, on
  // every rank: setting dynamic rules alike alone would still leave them to differ.
  const bool some_dynamic =
      std::any_of(values.begin(), values.end(), [](const auto& v) { return v[0] == "true"; });
  std::string differ;
  for (size_t k = 0; k < mine.size(); ++k) {
    if (read_only_with_dynamic_rules(k) && !some_dynamic) continue;
    // The values in the order of the lowest rank that holds each, with the ranks that hold it.
    std::vector<std::pair<std::string, std::vector<int>>> held;
    for (size_t r = 0; r < all.size(); ++r) {
      auto it =
          std::find_if(held.begin(), held.end(), [&](const auto& h) { return h.first == values[r][k]; });
      if (it == held.end())
        held.push_back({values[r][k], {static_cast<int>(r)}});
      else
        it->second.push_back(static_cast<int>(r));
    }
    if (held.size() < 2) continue;
    differ += (differ.empty() ? "" : "; ") + mine[k].first + ": ";
    for (size_t i = 0; i < held.size(); ++i)
      differ += (i ? ", " : "") + (held[i].first.empty() ? std::string("unset") : held[i].first) + " on " +
                ranks_text(held[i].second);
    if (read_only_with_dynamic_rules(k) &&
        std::any_of(values.begin(), values.end(), [](const auto& v) { return v[0] != "true"; }))
      differ += " (read only with dynamic rules)";
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool earlier = fs::exists(trace::rank_trace_path(output, 0), ec);
  print_error(
      "the ranks' allreduce settings differ (Open MPI's MCA parameters, as each rank reads them): " + differ +
      ": every rank of a run must run its allreduce the same way, or the ranks would wait for each other "
      "in the first allreduce or sum other values (set them alike for every rank: mpirun's -x or --mca "
      "for all application contexts, the same openmpi-mca-params.conf on every machine); nothing was "
      "recorded, nothing written" +
      (earlier ? " (" + output + " holds the earlier run, as it was)" : ""));
  return kBadInput;
}
#endif

// A step of setting up the run that may fail: -1 when it succeeded (under mpirun, on every rank), otherwise
// the exit code to return. Under mpirun every rank takes every step, and none trains unless all succeeded (a
// rank that stopped alone would leave the others waiting for it in the first allreduce, and itself in
// MPI_Finalize): a failure the same on every rank is said once, by rank 0; otherwise each rank that failed
// says why, with its rank, and every rank returns the highest code of those that failed.
int setup_step(const Status& s, int code) {
#if TRAINRR_WITH_MPI
  if (g_comm) {
    auto& c = *static_cast<MpiCollective*>(g_comm);
    const int worst = c.max(s.ok() ? -1 : code);
    if (worst < 0) return -1;
    const bool all_failed = c.max(s.ok() ? 1 : 0) == 0;
    if (!s.ok() && (!all_failed || g_rank == 0))
      print_error((all_failed ? "" : rank_prefix()) + s.error().message);
    return worst;
  }
#endif
  if (s.ok()) return -1;
  print_error(s.error().message);
  return code;
}

// What an existing folder holds besides the rank traces of an earlier run (rankN.trr).
struct FolderEntries {
  std::string
      foreign;  // the first entry that is neither a rank trace nor a killed recording's trace, or empty
  // The new traces of a killed recording over an earlier run (.trainrr-PID-N.trr.part, which a rank writes
  // beside its earlier trace until the run ends), whose writer is gone: each holds the steps its rank
  // completed.
  std::vector<std::string> leftovers;
};

FolderEntries folder_entries(const std::string& folder) {
  namespace fs = std::filesystem;
  FolderEntries out;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return out;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(folder, ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  const std::vector<std::string> killed = trace::killed_recording_traces(folder);
  for (const std::string& name : names) {
    const bool rank_trace = name.rfind("rank", 0) == 0 && name.size() > 8 && name.ends_with(".trr") &&
                            name.find_first_not_of("0123456789", 4) == name.size() - 4;
    if (rank_trace) continue;
    // A killed recording's. One a live recording writes stays in the way, as any other file.
    if (std::binary_search(killed.begin(), killed.end(), name)) {
      out.leftovers.push_back(name);
      continue;
    }
    if (out.foreign.empty()) out.foreign = name;
  }
  return out;
}

// "FILE (rank R's trace)" for a killed recording's trace in `folder`, as far as its header says.
std::string leftover_text(const std::string& folder, const std::string& name) {
  const std::string path = (std::filesystem::path(folder) / name).string();
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader || (*reader)->header().world_size < 1) return name;
  return name + " (rank " + std::to_string((*reader)->header().rank) + ")";
}

// Under mpirun: this process is one rank; -o names the run's folder and this rank writes FOLDER/rankR.trr.
int run_record_rank(RecordArgs a) {
#if TRAINRR_WITH_MPI
  const char* env_rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (a.level != "step") {
    // Every rank would say it: rank 0 does.
    if (!env_rank || std::string(env_rank) == "0")
      print_error("--level " + a.level + ": a data-parallel run records at level step (each rank runs the layers "
                "once per shard)");
    return kBadInput;
  }
  // A restart with another OPENBLAS_CORETYPE (TRAINRR_ISA below this CPU's) happens before MPI starts: the
  // restarted rank would start MPI a second time, which Open MPI refuses ("getting local rank failed").
  g_openblas_notes = keep_openblas_within_isa();
  auto comm = MpiCollective::init();
  if (!comm) {
    print_error(comm.error().message);
    return kCannotReplay;
  }
  MpiCollective& c = **comm;
  // Before any allreduce, the small ones that set the run up included.
  if (const int code = allreduce_settings_agree(c, a.output); code >= 0) return code;
  namespace fs = std::filesystem;
  std::error_code ec;
  int failed = 0;
  bool created =
      false;  // by this rank 0: a run refused before any rank wrote its trace leaves no folder behind
  if (c.rank() == 0) {
    if (fs::exists(a.output, ec) && !fs::is_directory(a.output, ec)) {
      print_error(a.output + " exists and is not a folder: a run of " + std::to_string(c.size()) +
                  " ranks is written as a folder of rank traces (choose another -o, or remove it)");
      failed = 1;
    } else if (const FolderEntries entries = folder_entries(a.output); !entries.foreign.empty()) {
      print_error(a.output + " holds " + entries.foreign +
                  ", which is not a rank trace: a run is written to a new folder or over an earlier run's "
                  "(choose another -o)");
      failed = 1;
    } else if (!entries.leftovers.empty()) {
      std::string names;
      for (const std::string& n : entries.leftovers)
        names += (names.empty() ? "" : ", ") + leftover_text(a.output, n);
      std::fprintf(
          stderr,
          "note: %s holds %s: the %s of a recording killed over an earlier run, holding the steps it "
          "completed (`trainrr show` reads %s); left as %s\n",
          inline_text(a.output).c_str(), inline_text(names).c_str(),
          entries.leftovers.size() == 1 ? "trace" : "rank traces",
          entries.leftovers.size() == 1 ? "it" : "each",
          entries.leftovers.size() == 1 ? "it is" : "they are");
    }
    if (failed) {
    } else if (created = !fs::exists(a.output, ec), created && (fs::create_directory(a.output, ec), ec)) {
      // The run's folder is made, not the folders above it, as for the trace of a run of its own.
      print_error(a.output + ": cannot create the run's folder: " + ec.message());
      failed = 1;
    }
  }
  if (c.max(failed)) return kBadInput;
  // One run id for every rank, drawn by rank 0.
  const uint64_t id = c.broadcast(entropy_seed());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, id);
  // A folder reused from a run of more ranks: its extra rank traces would mix two runs.
  if (c.rank() == 0)
    for (int r = c.size(); fs::exists(trace::rank_trace_path(a.output, r), ec); ++r)
      fs::remove(trace::rank_trace_path(a.output, r), ec);
  g_rank = c.rank();
  g_world = c.size();
  g_run_id = hex;
  g_comm = &c;
  a.output = trace::rank_trace_path(a.output, c.rank());
  const std::string folder = fs::path(a.output).parent_path().string();
  const int code = run_record(a);
  g_comm = nullptr;
  // A run refused (its configuration, say) before any rank wrote: remove() takes only an empty folder.
  if (code != kOk && created) fs::remove(folder, ec);
  return code;
#else
  (void)a;
  print_error("started by mpirun, but this trainrr was built without MPI (libopenmpi-dev was not found when it was "
              "built): rebuild with Open MPI installed, or run it without mpirun");
  return kCannotReplay;
#endif
}

int run_record(const RecordArgs& a) {
  // Before anything is read (a configuration from a pipe is read once): OpenBLAS within TRAINRR_ISA.
  for (const std::string& note : g_comm ? g_openblas_notes : keep_openblas_within_isa())
    std::fprintf(stderr, "note: %s\n", note.c_str());
  for (const std::string& note : openblas_fallback_notes()) std::fprintf(stderr, "note: %s\n", note.c_str());
  auto config = load_config(a.config, a.overrides);
#if TRAINRR_WITH_MPI
  if (g_comm)
    if (const int code = ranks_agree(config, a); code >= 0) return code;
#endif
  if (!config) {
    print_error(config.error().message);
    return kBadInput;
  }
  // [distributed] sets up a data-parallel run, which mpirun starts: one process takes each batch whole.
  if (!g_comm && (config->distributed.shards != 0 || config->distributed.allreduce != "auto")) {
    std::string set;
    if (config->distributed.shards != 0) set = "shards = " + std::to_string(config->distributed.shards);
    if (config->distributed.allreduce != "auto")
      set += (set.empty() ? "" : ", ") + std::string("allreduce = \"") + config->distributed.allreduce + "\"";
    std::fprintf(
        stderr,
        "note: %s: [distributed] (%s) sets up a data-parallel run, which mpirun starts; this run is one "
        "process, which takes each batch whole, and does not use it\n",
        inline_text(config->file.empty() ? a.config : config->file).c_str(), inline_text(set).c_str());
  }
  // Before the trace is created: a run that cannot start here writes nothing.
  if (const std::string problem = new_run_problem(*config); !problem.empty())
    if (const int code = setup_step(Status{Error{problem}}, kBadInput); code >= 0) return code;
  if (const int code = setup_step(check_run_device(*config), kCannotReplay); code >= 0) return code;
  RecordOptions ro;
  ro.path = a.output;
  ro.level = a.level == "op" ? ProbeLevel::op : a.level == "layer" ? ProbeLevel::layer : ProbeLevel::step;
  ro.checkpoint_every = a.checkpoint_every;
  ro.embed_data = a.embed_data;
  ro.kernels = !a.no_kernels;
  auto recorder = Recorder::create(*config, ro);
  if (const int code = setup_step(recorder ? Status{} : Status{recorder.error()}, kBadInput); code >= 0)
    return code;
  auto isa = runtime_isa();
  if (const int code = setup_step(isa ? Status{} : Status{isa.error()}, kBadInput); code >= 0) return code;
  const int threads = config->runtime.threads > 0 ? config->runtime.threads : ThreadPool::hardware_threads();
  (*recorder)->set_runtime(threads, isa_name(*isa), config->runtime.policy);
  if (g_comm) (*recorder)->set_rank(g_rank, g_world, g_run_id, g_comm->settings());

  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.hooks = recorder->get();
  // One rank speaks for the run.
  opts.log = g_rank == 0 ? stdout : nullptr;
  opts.warnings = g_rank == 0 ? stderr : nullptr;
  opts.progress = g_rank == 0 && progress_reaches_a_terminal();
  opts.collective = g_comm;
  opts.interrupt = &g_interrupted;
#if TRAINRR_WITH_MPI
  // A signal reaches the ranks at slightly different times: they agree on the step they stop at, so that none
  // stops while another waits for it in the step's allreduce.
  if (g_comm)
    // The ranks agree on the signal too (the highest, where several came): a rank stopped by another's exits
    // with that signal's code, as the rank it reached does.
    opts.agree = [](bool mine) {
      const int sig =
          static_cast<MpiCollective*>(g_comm)->max(mine ? (g_signal.load() ? g_signal.load() : SIGINT) : 0);
      int none = 0;
      if (sig != 0) g_signal.compare_exchange_strong(none, sig);
      return sig != 0;
    };
#endif
  // SIGHUP: the terminal closed; the run stops as for Ctrl-C, its trace finished. Under mpirun, which sends
  // the ranks SIGTERM when it ends the job and no longer reads their output, a write to it that blocks
  // returns at the signal (no SA_RESTART), so that the rank goes on to finish its trace.
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = g_comm ? 0 : SA_RESTART;
  // A signal the caller ignores stays ignored: `nohup trainrr record ... &` goes on when the terminal closes,
  // and a job a script started in the background is not stopped by the Ctrl-C meant for the script.
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction before = {};
    if (::sigaction(sig, nullptr, &before) == 0 && before.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &sa, nullptr);
  }

  auto training = Training::create(*config, opts);
  // Refused before it started: -o is untouched, an earlier trace there kept.
  if (const int code = setup_step(training ? Status{} : Status{training.error()},
                                  !training && training.error().machine ? kCannotReplay : kBadInput);
      code >= 0)
    return code;
  if (DeviceBackend* device = (*training)->device()) (*recorder)->add_environment(device->environment());
  // The trace could not be started: nothing to train for. Under mpirun, the ranks whose trace started take it
  // back (a new trace at the path is removed; one waiting beside an earlier trace is dropped by its writer).
  const Status started = (*recorder)->start();
  if (const int code = setup_step(started, kBadInput); code >= 0) {
    if (started.ok()) {
      const bool at_path = (*recorder)->pending_name().empty();
      recorder->reset();
      std::error_code ec;
      if (at_path) std::filesystem::remove(a.output, ec);
    }
    return code;
  }
  if (g_rank == 0) print_run_header(stdout, *config, **training);
  if (g_comm && g_rank == 0)
    std::printf("data-parallel: %d ranks, run %s, global batch %lld\n", g_world, g_run_id.c_str(),
                static_cast<long long>(config->train.batch_size));
  if (g_rank != 0) {
  } else if (a.checkpoint_every > 0)
    std::printf(
        "recording to %s (level %s; checkpoints: the initial state, every %lld step%s, the final state)\n",
        inline_text(a.output).c_str(), a.level.c_str(), static_cast<long long>(a.checkpoint_every),
        a.checkpoint_every == 1 ? "" : "s");
  else
    std::printf("recording to %s (level %s; checkpoints: the initial and the final state)\n",
                inline_text(a.output).c_str(), a.level.c_str());
  // Every rank's: under mpirun, rank 0 says where each rank's new trace waits (a killed run leaves them
  // there).
  std::vector<std::string> pending = {(*recorder)->pending_name()};
#if TRAINRR_WITH_MPI
  if (g_comm) pending = static_cast<MpiCollective*>(g_comm)->gather(pending[0]);
#endif
  for (size_t r = 0; r < pending.size(); ++r)
    if (g_rank == 0 && !pending[r].empty())
      std::printf(
          "%s holds an earlier trace: the new one replaces it when this run ends; until then it is %s%s\n",
          inline_text(g_comm ? trace::rank_trace_path(std::filesystem::path(a.output).parent_path().string(),
                                                      static_cast<int>(r))
                             : a.output)
              .c_str(),
          inline_text(pending[r]).c_str(),
          pending[r].find('/') == std::string::npos ? " beside it" : ", beside the trace the link leads to");
  if (g_rank == 0 && (*recorder)->kernels_recorded())
    std::printf("GPU kernels: gathered with CUPTI; %s\n",
                a.level == "step" ? "level step keeps each step's kernel count and the digest of their sequence"
                                  : "each op's kernels are kept, with grid, block and duration (show --kernels lists them)");
  else if (g_rank == 0 && !(*recorder)->kernels_not_recorded().empty())
    std::printf("GPU kernels: not recorded: %s\n", (*recorder)->kernels_not_recorded().c_str());
  Status fit = (*training)->fit();
  // The final state, for export and resumption, unless the last periodic checkpoint holds it already; a run
  // stopped by Ctrl-C stops between two steps, and its state there is kept too.
  const int64_t last = (*training)->step();
  // Stopped by a signal: this rank's own, or, under mpirun, another rank's that the ranks agreed on (a rank
  // may stop before its own copy of the signal arrives).
  const bool interrupted = !fit.ok() && fit.error().message.rfind("interrupted at step", 0) == 0;
  const bool replacing = !(*recorder)->pending_name().empty();
  // Stopped before its first step ended, the run recorded no step to read: an earlier trace at -o stays as
  // it was, and a path that held none is left without one.
  if (interrupted && last == 0) {
    recorder->reset();
    std::error_code ec;
    if (!replacing) std::filesystem::remove(a.output, ec);
    print_error(rank_prefix() + fit.error().message + ", before any step ended: nothing was recorded; " +
                (replacing ? inline_text(a.output) + " holds the earlier trace, as it was"
                           : std::string("no trace was written")));
    return 128 + (g_signal.load() ? g_signal.load() : SIGINT);
  }
  if ((fit.ok() || (interrupted && last > 0)) && (a.checkpoint_every == 0 || last % a.checkpoint_every != 0))
    (*recorder)->checkpoint((*training)->state());
  // The footer says why the run ended: "completed", "interrupted at step N" (a signal, no error), or the
  // error.
  Status done = (*recorder)->finish(fit.ok(), fit.ok()      ? "completed"
                                              : interrupted ? fit.error().message
                                                            : "error: " + fit.error().message);
#if TRAINRR_WITH_MPI
  // A rank that stops alone would leave the others waiting for it in an allreduce: the run ends with it (its
  // trace is finished above; the others keep every step they completed).
  if (!fit.ok() && g_comm && !interrupted) {
    print_error(rank_prefix() + fit.error().message);
    static_cast<MpiCollective*>(g_comm)->abort(kBadInput);
  }
#endif
  if (!fit.ok()) {
    print_error(rank_prefix() + fit.error().message);
    if ((*recorder)->trace_gone())
      print_error(rank_prefix() + done.error().message);  // nothing is where the trace was written
    else if ((*recorder)->status().ok())
      std::fprintf(stderr, "trainrr: the trace %s holds every step completed before that\n",
                   inline_text(a.output).c_str());
    else if (replacing)
      // A new trace whose write failed is not put in place of the earlier one, nor kept beside it.
      std::fprintf(
          stderr,
          "trainrr: %s holds the earlier trace, as it was: the new one could not be written whole, and "
          "its steps were not kept\n",
          inline_text(a.output).c_str());
    else
      std::fprintf(
          stderr,
          "trainrr: the trace %s holds the steps written before the failure (`trainrr show` counts them)\n",
          inline_text(a.output).c_str());
    return interrupted ? 128 + (g_signal.load() ? g_signal.load() : SIGINT) : kBadInput;
  }
  if (!done.ok()) {
    print_error(rank_prefix() + done.error().message);
    return kBadInput;
  }
  if (g_rank != 0) return kOk;
  print_final_metrics(stdout, **training);
  if (g_comm)
    std::printf(g_world == 1 ? "run: %s, 1 rank trace (rank0.trr)\n"
                             : "run: %s, %d rank traces (rank0.trr .. rank%d.trr)\n",
                inline_text(std::filesystem::path(a.output).parent_path().string()).c_str(), g_world,
                g_world - 1);
  std::printf("trace: %s, %lld step%s, %llu bytes\n", inline_text(a.output).c_str(),
              static_cast<long long>((*training)->step()), (*training)->step() == 1 ? "" : "s",
              static_cast<unsigned long long>((*recorder)->bytes_written()));
  return kOk;
}

}  // namespace

void add_record_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<RecordArgs>();
  CLI::App* cmd = app.add_subcommand(
      "record",
      "Train from a configuration and record every choice to a trace.\n"
      "Exit codes: 0 recorded, 2 bad input (configuration, data, -o, a step that fails: the\n"
      "trace keeps the steps completed before it), 3 cannot run here (runtime.device names a\n"
      "GPU this machine or this build lacks; mpirun without MPI; the model's tensors for a batch\n"
      "take more memory than this process can have), 130, 143 or 129 interrupted\n"
      "by SIGINT, SIGTERM or SIGHUP (the trace keeps the steps completed and the state it\n"
      "stopped in).");
  cmd->add_option("config", args->config, "Run configuration (TOML)")->required();
  cmd->add_option("-o,--output", args->output,
                  "Trace file to write; under mpirun, the run's folder, which gets a trace per rank "
                  "(rank0.trr, rank1.trr, ...)")
      ->required()
      ->check(CLI::Validator(
          [](const std::string& v) {
            return v.empty() ? "the trace needs a file path, got an empty one" : std::string();
          },
          "PATH"));
  cmd->add_option(
         "--level", args->level,
         "What to probe: step (summaries), layer (each layer's output), op (every op); default: step "
         "(under mpirun, step only)")
      ->check(CLI::IsMember({"step", "layer", "op"}));
  cmd->add_option("--checkpoint-every", args->checkpoint_every, "Write a checkpoint every N steps besides the initial and final states, which are always written "
                  "(default 0: only those two)")
      ->check(CLI::Validator(
          [](const std::string& v) { return !v.empty() && v[0] != '-' ? std::string() : "must be 0 or more"; },
          "N >= 0"));
  cmd->add_flag("--embed-data", args->embed_data, "Store the data files in the trace");
  cmd->add_flag("--no-kernels", args->no_kernels,
                "On a GPU, do not gather the kernels that ran (CUPTI): for a run that another profiler, such as "
                "Nsight Systems, is profiling, or to time it without CUPTI; the trace's header says so");
  cmd->add_option("--set", args->overrides,
                  "Override a configuration key, e.g. --set train.epochs=3 or --set model.layers[1].rate=0")
      ->type_name("KEY=VALUE");
  cmd->callback([args, &exit_code] {
    exit_code = launched_by_mpirun() ? run_record_rank(*args) : run_record(*args);
  });
}

}  // namespace trainrr::cli
