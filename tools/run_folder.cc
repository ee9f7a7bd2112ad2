#include "tools/run_folder.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "engine/fingerprint.h"
#include "engine/local_group.h"
#include "replayer/divergence.h"
#include "replayer/replayer.h"
#include "replayer/runs.h"
#include "tools/commands.h"
#include "tools/openblas_core.h"
#include "tools/trace_text.h"
#include "traces/run_set.h"
#include "traces/trace_reader.h"
#if TRAINRR_WITH_MPI
#include "distributed/mpi_collective.h"
#endif

namespace trainrr::cli {

namespace {

// What a process under mpirun read as the run: its id, and each rank's trace by size and digest, packed for
// gathering ("" where a trace cannot be digested). Processes that read different copies of a run (a folder
// per node, one of them cut short or changed, or another run under the same name) would each replay their own
// and wait for the others at an allreduce that never comes.
std::string run_copy(const trace::RunSet& run) {
  std::string out = run.run_id;
  for (const std::string& p : run.paths) {
    auto d = trace::digest_regular_file(p);
    out += "\x1f" + (d ? std::to_string(d->size) + " " + std::to_string(d->digest.low) + " " +
                             std::to_string(d->digest.high)
                       : std::string("?"));
  }
  return out;
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  for (size_t at = 0;;) {
    const size_t next = s.find(sep, at);
    out.push_back(s.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (next == std::string::npos) return out;
    at = next + 1;
  }
}

// Rank 0's words for the first process whose copy of the run differs from its own, or "".
std::string copies_differ(const std::vector<std::string>& copies, const trace::RunSet& run,
                          const std::string& path) {
  const std::vector<std::string> mine = split_on(copies[0], '\x1f');
  for (size_t p = 1; p < copies.size(); ++p) {
    if (copies[p] == copies[0]) continue;
    const std::vector<std::string> theirs = split_on(copies[p], '\x1f');
    std::string what;
    if (theirs[0] != mine[0] || theirs.size() != mine.size()) {
      what = "it holds run " + theirs[0] + " of " + counted(static_cast<int64_t>(theirs.size()) - 1, "rank") +
             ", process 0's run " + mine[0] + " of " + counted(static_cast<int64_t>(mine.size()) - 1, "rank");
    } else {
      for (size_t r = 1; r < mine.size() && what.empty(); ++r)
        if (theirs[r] != mine[r]) {
          const std::string file = std::filesystem::path(run.paths[r - 1]).filename().string();
          const auto bytes = [](const std::string& f) {
            return f == "?" ? std::string("unreadable") : f.substr(0, f.find(' ')) + " bytes";
          };
          what = "its " + file + " is not process 0's (" + bytes(theirs[r]) + " vs " + bytes(mine[r]) +
                 (bytes(theirs[r]) == bytes(mine[r]) ? ", other bytes" : "") + ")";
        }
    }
    return "process " + std::to_string(p) + " reads another copy of " + path + " than process 0: " + what +
           ": every process of a replay under mpirun reads the same run (one folder, or copies of it "
           "byte for byte)";
  }
  return "";
}

int print_report(const RunReport& r) {
  // Each line quotes the traces (sites, causes): escaped for the terminal, one line each.
  for (const auto& line : r.lines) std::printf("%s\n", inline_text(line).c_str());
  if (std::fflush(stdout) != 0) return kBadInput;
  if (!r.error.empty()) print_error(r.error);
  return r.exit_code;
}

// Under mpirun -n N: this process replays rank R of the N-rank run from its own trace, through MPI; rank 0
// gathers what each rank found and reports the earliest step, the lowest rank there, and its cause.
// OpenBLAS kept within TRAINRR_ISA, or running the code the recording's rank 0 ran where the kernels are
// forced, as for one process's trace: this may restart the process, before anything is read or MPI starts.
std::vector<std::string> openblas_for_run(const std::string& path, const ForceSet& force) {
  if (!force.kernels) return keep_openblas_within_isa();
  if (auto reader = trace::TraceReader::open(trace::rank_trace_path(path, 0), trace::without_payloads()))
    return use_recorded_openblas_core((*reader)->header());
  return {};
}

int replay_rank_under_mpirun(const std::string& path, const ForceSet& force, const std::vector<std::string>& overrides,
                             int64_t to_step) {
#if TRAINRR_WITH_MPI
  const std::vector<std::string> openblas_notes = openblas_for_run(path, force);
  auto comm = MpiCollective::init();
  if (!comm) {
    print_error(comm.error().message);
    return kCannotReplay;
  }
  MpiCollective& c = **comm;
  auto run = trace::open_run(path);
  Status usable = run ? require_complete_steps(*run) : Status(run.error());
  if (c.max(usable ? 0 : 1)) {
    if (c.rank() == 0) print_error(usable ? "another rank could not read " + path : usable.error().message);
    return kBadInput;
  }
  // Every process reads the same run, or none replays.
  const std::vector<std::string> copies = c.gather(run_copy(*run));
  const std::string differ = c.rank() == 0 ? copies_differ(copies, *run, path) : std::string();
  if (c.broadcast(uint64_t{differ.empty() ? 0u : 1u})) {
    if (c.rank() == 0) print_error(differ);
    return kBadInput;
  }
  const int n = run->world_size;
  if (n % c.size() != 0) {
    if (c.rank() == 0)
      print_error(path + " is a run of " + counted(n, "rank") + ": replay it under mpirun -n " +
                  std::to_string(n) + " (or a count that divides " + std::to_string(n) +
                  "), or without mpirun in one process");
    return kBadInput;  // a usage error: another process count replays it
  }
  std::string packed;
  if (n == c.size()) {
    // One rank per process, through MPI itself.
    RankReplay mine = replay_one_rank(*run, c.rank(), force, overrides, to_step, c);
    if (mine.exit_code >= 2) {
      // The other ranks may be waiting for this one in an allreduce: the run ends here.
      print_error("rank " + std::to_string(c.rank()) + ": " + mine.text);
      c.abort(mine.exit_code);
    }
    packed = std::to_string(mine.exit_code) + "|" + std::to_string(mine.step) + "|" + std::to_string(mine.priority) +
             "|" + mine.text;
  } else {
    // n / size ranks per process, in threads; the processes exchange every rank's shards at each allreduce.
    if (std::string why = cannot_emulate(*run, force); !why.empty()) {
      if (c.rank() == 0) print_error(why);
      return kCannotReplay;
    }
    const int local = n / c.size();
    LocalGroup group(n, recorded_settings(run->headers[0]), c.rank() * local, local, &c);
    for (const std::string& p : replay_hosted_ranks(*run, force, overrides, to_step, group, c.rank() * local, local)) {
      if (p[0] == '2' || p[0] == '3') {
        print_error(p.substr(p.find('|', p.find('|', p.find('|') + 1) + 1) + 1));
        c.abort(p[0] - '0');
      }
      packed += (packed.empty() ? "" : "\x1e") + p;
    }
  }
  std::vector<std::string> all;
  for (const std::string& from_process : c.gather(packed))
    for (size_t at = 0;;) {
      const size_t sep = from_process.find('\x1e', at);
      all.push_back(from_process.substr(at, sep == std::string::npos ? std::string::npos : sep - at));
      if (sep == std::string::npos) break;
      at = sep + 1;
    }
  // Each process's environment, for rank 0 to compare every rank with the process that replayed it.
  const std::vector<std::string> environments =
      c.gather(packed_environment(*run, overrides, c.rank() * (n / c.size()), n / c.size()));
  if (c.rank() != 0) return kOk;
  RunReport report = gathered_report(all, n);
  if (n != c.size()) {
    const std::string mpi_how = counted(n, "rank") + " replayed under mpirun, each checking its own trace";
    const std::string how = std::to_string(n) + " ranks replayed under mpirun -n " + std::to_string(c.size()) + ", " +
                            std::to_string(n / c.size()) + " per process";
    for (auto& line : report.lines)
      if (size_t at = line.find(mpi_how); at != std::string::npos) line.replace(at, mpi_how.size(), how);
  }
  add_allreduce_line(*run, report);
  if (n == c.size()) add_algorithm_here_note(*run, c.settings(), report);
  headline_stop(*run, report, to_step);
  add_run_inputs(*run, force, overrides, report, n / c.size(), &environments);
  for (const std::string& note : openblas_notes) report.lines.push_back("  note: " + note);
  for (const std::string& note : killed_recording_notes(path)) report.lines.push_back("  " + note);
  return print_report(report);
#else
  (void)path, (void)force, (void)overrides, (void)to_step;
  print_error("started by mpirun, but this trainrr was built without MPI: replay the run without mpirun");
  return kCannotReplay;
#endif
}

}  // namespace

namespace {

// rank0.trr .. rankN-1.trr
std::string rank_files_text(int world_size) {
  return world_size == 1 ? "rank0.trr" : "rank0.trr .. rank" + std::to_string(world_size - 1) + ".trr";
}

}  // namespace

std::vector<std::string> killed_recording_notes(const std::string& folder) {
  namespace fs = std::filesystem;
  struct Part {
    std::string name;
    int rank = -1;  // -1: its header cannot be read
    int world = 0;
    int64_t steps = 0;
  };
  std::map<std::string, std::vector<Part>> by_run;  // by run id
  std::error_code ec;
  for (const std::string& name : trace::killed_recording_traces(folder)) {
    const std::string path = (fs::path(folder) / name).string();
    Part p{name};
    std::string id;
    if (auto reader = trace::TraceReader::open(path, trace::without_payloads());
        reader && (*reader)->header().world_size > 0) {
      p.rank = (*reader)->header().rank;
      p.world = (*reader)->header().world_size;
      id = (*reader)->header().run_id;
      for (;;) {
        auto record = (*reader)->next();
        if (!record || !*record) break;  // its end, or where it was cut
        const auto* step = std::get_if<trace::TraceStep>(&(*record)->value);
        if (step && step->end) ++p.steps;
      }
    }
    by_run[id].push_back(p);
  }
  if (by_run.empty()) return {};
  // The folder's rank traces are another run than the killed one, the one the report is of. (Which came first
  // is not told: a file's time says when it was last written, and a copy changes it.)
  std::string ours;
  if (auto run = trace::open_run(folder))
    ours = "; the folder's " + rank_files_text(run->world_size) + (run->world_size == 1 ? " is " : " are ") +
           "another run (" + run->run_id + "), the one reported here";
  std::vector<std::string> notes;
  for (const auto& [id, parts] : by_run) {
    std::string list;
    std::vector<int> ranks;
    for (const Part& p : parts) {
      list += (list.empty() ? "" : ", ") + p.name +
              (p.rank < 0 ? std::string(" (no readable header)")
                          : " (rank " + std::to_string(p.rank) + ", " +
                                (p.steps ? counted(p.steps, "step") : std::string("no complete step")) + ")");
      if (p.rank >= 0) ranks.push_back(p.rank);
    }
    std::sort(ranks.begin(), ranks.end());
    const int world = parts[0].world;
    bool every_rank = !id.empty() && static_cast<int>(ranks.size()) == world;
    for (int r = 0; every_rank && r < world; ++r) every_rank = ranks[r] == r;
    const bool one = parts.size() == 1;
    notes.push_back("note: " + folder + " also holds " + (one ? "the trace" : "the rank traces") +
                    " of a recording killed there" +
                    (id.empty() ? std::string() : " (run " + id + " of " + counted(world, "rank") + ")") +
                    ": " + list + ours + ". `trainrr show FILE` reads " + (one ? "it" : "each") +
                    (every_rank ? "; copied into a folder of their own as " + rank_files_text(world) +
                                      " (by their ranks), they replay as a run"
                     : id.empty() ? ""
                                  : "; not every rank of that run has such a file here (a rank may still be "
                                    "exiting, or have ended and written its " +
                                        rank_files_text(world) + " file)"));
  }
  return notes;
}

int refuse_for(const std::string& path, const std::string& what) {
  if (trace::is_run_folder(path)) return -1;
  auto reader = trace::TraceReader::open(path);
  if (!reader) return -1;  // the verb reports it as it does for any trace
  if (Status s = trace::refuse_rank_alone((*reader)->header(), path, what); !s) {
    print_error(s.error().message);
    return kBadInput;
  }
  return -1;
}

int refuse_options_for_run(const std::string& path, const std::vector<std::string>& options) {
  if (options.empty() || !trace::is_run_folder(path)) return -1;
  // Why each is refused, in what a run's replay does instead.
  auto why = [](const std::string& o) -> std::string {
    if (o == "--json" || o == "--html") return "a run's report is text";
    if (o == "--data" || o == "--allow-data-change") return "a run replays on the data its traces record";
    if (o == "--from-step") return "a run replays from step 0";
    if (o == "--keep-going") return "a run's replay stops at its first difference";
    return "";
  };
  std::string list, reasons;
  for (size_t i = 0; i < options.size(); ++i) {
    list += (i ? ", " : "") + options[i];
    reasons += (i ? "; " : "") + options[i] + ": " + why(options[i]);
  }
  print_error(list + (options.size() == 1 ? " is" : " are") + " not available for a data-parallel run (" +
              path + ") yet (" + reasons + ")");
  return kBadInput;
}

int replay_run_folder(const std::string& path, const ForceSet& force, const std::vector<std::string>& overrides,
                      int64_t to_step) {
  if (!trace::is_run_folder(path)) return refuse_for(path, "replay");
  if (launched_by_mpirun()) return replay_rank_under_mpirun(path, force, overrides, to_step);
  const std::vector<std::string> openblas_notes = openblas_for_run(path, force);
  RunReplayOptions o;
  o.folder = path;
  o.force = force;
  o.overrides = overrides;
  o.to_step = to_step;
  RunReport report = replay_run(o);
  if (report.exit_code < 2)
    for (const std::string& note : openblas_notes) report.lines.push_back("  note: " + note);
  for (const std::string& note : killed_recording_notes(path)) report.lines.push_back("  " + note);
  return print_report(report);
}

int diff_run_folders(const std::string& a, const std::string& b) {
  const bool fa = trace::is_run_folder(a), fb = trace::is_run_folder(b);
  if (!fa && !fb) {
    const int ra = refuse_for(a, "diff");
    return ra >= 0 ? ra : refuse_for(b, "diff");
  }
  if (fa != fb) {
    if (const int code = refuse_for(fa ? b : a, "diff"); code >= 0) return code;
    // A path that is no trace at all (missing, a configuration) is said to be that, not a trace of one
    // process.
    if (auto reader = trace::TraceReader::open(fa ? b : a); !reader) {
      print_error(reader.error().message);
      return kBadInput;
    }
    print_error((fa ? a : b) + " is a data-parallel run and " + (fa ? b : a) +
                " a trace of one process: diff compares runs with runs");
    return kBadInput;
  }
  RunReport report = diff_runs(a, b);
  for (const std::string& folder : a == b ? std::vector<std::string>{a} : std::vector<std::string>{a, b})
    for (const std::string& note : killed_recording_notes(folder)) report.lines.push_back("  " + note);
  return print_report(report);
}

int show_run_folder(const std::string& path) {
  auto run = trace::open_run(path);
  if (!run) {
    print_error(run.error().message);
    return kBadInput;
  }
  const trace::TraceHeader& h0 = run->headers[0];
  std::map<std::string, std::string> env(h0.environment.begin(), h0.environment.end());
  // The traces' strings (run id, paths, environment values, collective names) are untrusted: each is escaped
  // for the terminal and stays on its line.
  const auto f = [](const std::string& s) { return inline_text(s); };
  if (run->world_size == 1)
    std::printf("run %s: 1 rank, run id %s (its trace: rank0.trr)\n", f(path).c_str(),
                f(run->run_id).c_str());
  else
    std::printf("run %s: %d ranks, run id %s (one trace per rank: rank0.trr .. rank%d.trr)\n",
                f(path).c_str(), run->world_size, f(run->run_id).c_str(), run->world_size - 1);
  // The configuration as the run was asked for: its file and every --set given to record.
  std::string config = h0.config_path;
  for (const std::string& o : h0.config_overrides) config += " --set " + o;
  std::printf("config: %s\n", f(config).c_str());
  std::printf("MPI library: %s\n", f(env["mpi.library"]).c_str());
  std::printf(
      "MCA: coll_tuned_use_dynamic_rules=%s coll_tuned_allreduce_algorithm=%s "
      "coll_tuned_allreduce_algorithm_segmentsize=%s\n",
      f(env["mpi.coll_tuned_use_dynamic_rules"]).c_str(),
      f(env["mpi.coll_tuned_allreduce_algorithm"]).c_str(),
      f(env["mpi.coll_tuned_allreduce_algorithm_segmentsize"]).c_str());
  // The settings that take the choice from the decision table, where the run had them.
  if (!env["mpi.coll"].empty()) std::printf("MCA: coll=%s\n", f(env["mpi.coll"]).c_str());
  if (!env["mpi.coll_tuned_dynamic_rules_filename"].empty())
    std::printf("MCA: coll_tuned_dynamic_rules_filename=%s\n",
                f(env["mpi.coll_tuned_dynamic_rules_filename"]).c_str());
  bool described = false;
  int code = kOk;
  for (int r = 0; r < run->world_size; ++r) {
    auto reader = trace::TraceReader::open(run->paths[r], trace::without_payloads());
    if (!reader) {
      print_error(reader.error().message);
      return kBadInput;
    }
    int64_t steps = 0, calls = 0;
    double last_loss = 0;
    bool last_rows = true;  // the last step's shards held rows: its loss is theirs
    std::string stop;
    bool damaged = false;
    for (;;) {
      auto record = (*reader)->next();
      if (!record) {
        stop = record.error().message;
        damaged = (*reader)->stopped() && !(*reader)->stopped()->truncated;
        break;
      }
      if (!*record) break;
      const auto* step = std::get_if<trace::TraceStep>(&(*record)->value);
      if (!step || !step->end) continue;
      ++steps;
      calls += static_cast<int64_t>(step->collectives.size());
      last_loss = step->end->loss;
      // A last global batch too small for every rank leaves some with empty shards: no rows, no loss.
      static const uint64_t no_rows = digest(std::span<const uint32_t>());
      last_rows = step->collectives.empty() ||
                  std::any_of(step->collectives[0].shard_rows.begin(), step->collectives[0].shard_rows.end(),
                              [](uint64_t d) { return d != no_rows; });
      if (!described && !step->collectives.empty()) {
        const CollectiveCall& c = step->collectives[0];
        const size_t buckets = step->collectives.size();
        // Buckets of other sizes may run other algorithms: each is named with its buckets.
        std::printf("allreduce: %s, %s%s; %s per global batch; %s of %lld elements\n", f(c.variant).c_str(),
                    f(bucket_algorithms(step->collectives)).c_str(),
                    c.algorithm_inferred ? " (inferred from Open MPI 4.1's decision table)"
                    : c.variant == kAllreduceArrival
                        ? " (in the order recorded, which varies from run to run)"
                    : c.forced ? " (fixed)"
                               : "",
                    counted(c.shards, "micro-batch shard").c_str(),
                    buckets == 1 ? "1 bucket" : (std::to_string(buckets) + " buckets, the first").c_str(),
                    static_cast<long long>(c.count));
        described = true;
      }
    }
    // A trace changed after it was written is bad input, as `show` of that rank's trace says.
    if (damaged) code = kBadInput;
    // A footer that says the run stopped before its schedule's end (interrupted, or an error) says why, as
    // `show` of that rank's trace does.
    const auto& footer = (*reader)->footer();
    // Damage comes first: bytes after a footer are read once the footer has been.
    const std::string end =
        damaged ? "damaged: " + stop +
                      (stop.find("changed after it was written") == std::string::npos
                           ? " (changed after it was written)"
                           : "")
        : footer && !footer->completed ? "ended cleanly: the run stopped early (" + footer->end_reason + ")"
        : (*reader)->ended_cleanly()   ? "ended cleanly"
        : (*reader)->still_recording() ? "still being recorded: read to its last complete step"
        : stop.empty()                 ? "no footer: the recording did not finish"
                                       : "cut: " + stop;
    // The reader's words quote the trace's strings: escaped, on this line.
    char loss[64];
    if (last_rows)
      std::snprintf(loss, sizeof loss, "last loss %.6g (its shards)", last_loss);
    else
      std::snprintf(loss, sizeof loss, "no last loss (its shards held no rows in the last step)");
    std::printf("  rank %d: %s, %s, %s, %s\n", r, counted(steps, "step").c_str(),
                counted(calls, "allreduce call").c_str(), steps > 0 ? loss : "no complete step",
                f(end).c_str());
    // A rank that ran elsewhere, or otherwise (another instruction set, another OpenBLAS core): what of its
    // environment differs from rank 0's, its MPI settings and host aside.
    if (r > 0) {
      std::string other;
      for (const auto& e : environment_differences(h0.environment, run->headers[r].environment))
        if (e.key.rfind("mpi.", 0) != 0 && e.key != "host")
          other += (other.empty() ? "" : ", ") + e.key + " " + e.replayed + " (rank 0: " + e.recorded + ")";
      if (!other.empty()) std::printf("    its environment differs from rank 0's: %s\n", f(other).c_str());
    }
  }
  for (const std::string& note : killed_recording_notes(path)) std::printf("%s\n", f(note).c_str());
  if (std::fflush(stdout) != 0) return kBadInput;
  return code;
}

}  // namespace trainrr::cli
