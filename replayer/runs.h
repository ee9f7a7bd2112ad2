#pragma once
// Data-parallel runs (traces/run_set.h): replay of all ranks in one process, and the comparison of two
// runs, with the cause `collective` (the allreduce's inputs match on every rank, its result differs).

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/collective.h"
#include "replayer/divergence.h"
#include "replayer/force.h"
#include "traces/run_set.h"

namespace trainrr {

class LocalGroup;

struct RunReport {
  int exit_code = 0;  // 0 reproduced / identical, 1 diverged, 2 bad input, 3 cannot replay here
  std::string error;  // for exit codes 2 and 3
  std::vector<std::string> lines;  // the report, for people
  int64_t step = -1;               // exit code 1: the step of the first difference
};

struct RunReplayOptions {
  std::string folder;
  ForceSet force = ForceSet::all();
  std::vector<std::string> overrides;
  int64_t to_step = -1;  // stop before this step (-1: the end)
};

// Every rank of the run replayed in this process, one thread each, the recorded reduction applied exactly
// (engine/local_group.h). An allreduce__mpi algorithm that cannot be emulated exits 3.
RunReport replay_run(const RunReplayOptions& options);

// One rank of the run replayed in this process through `comm` (an MPI rank under mpirun -n N): what it
// found, for gathered_report().
struct RankReplay {
  int exit_code = 0;   // 0 reproduced, 1 diverged, 2 bad input, 3 cannot replay here
  int64_t step = -1;   // the step of its first difference
  int priority = 0;    // within the step: 0 sharding, 1 shard gradients, 2 allreduce result, 3 the step's end
  std::string text;    // its report lines (exit 0 and 1), or its error
};
RankReplay replay_one_rank(const trace::RunSet& run, int rank, const ForceSet& force,
                           const std::vector<std::string>& overrides, int64_t to_step, Collective& comm);
// Ranks first .. first + local - 1 replayed in this process, one thread each, as members of `group`; one
// "code|step|priority|text" per rank for gathered_report().
// `raced`, when set, receives for each hosted rank the units whose choice its replay made by a race
// (racy_in_replay: a first-ready loader, a completion-order sum, an autotuned selection).
// `filter`, when set, narrows each rank's forcing to the units it accepts (ReplayHooks::set_force_filter).
std::vector<std::string> replay_hosted_ranks(
    const trace::RunSet& run, const ForceSet& force, const std::vector<std::string>& overrides,
    int64_t to_step, LocalGroup& group, int first, int local,
    std::function<bool(int rank, const std::string& unit)> filter = {},
    std::vector<std::set<std::string>>* raced = nullptr);
// Why the run's allreduce cannot be replayed on fewer processes than ranks (an Open MPI algorithm not
// emulated here), or empty.
std::string cannot_emulate(const trace::RunSet& run, const ForceSet& force);
// Rank 0's report from every rank's "code|step|priority|text".
RunReport gathered_report(const std::vector<std::string>& packed, int ranks);

// Bisection of a run: a replay of every rank in this process, nothing forced but the choices a race decides,
// finds the first step that differs, the lowest rank there and the cause; delta debugging over every rank's
// recorded choices up to that step then finds the smallest set ("rank 2: kernel:allreduce/bucket_0") that,
// forced, reproduces through it, and the set is replayed through the whole run (the window grows where it
// falls short). The report says how far the set was shown to reproduce.
RunReport bisect_run(const std::string& folder, const std::vector<std::string>& overrides);

// The lines under "environment differences:" for ranks compared side by side: `per_rank[i]` holds rank
// `ranks[i]`'s differences, `left`/`right` name the sides ("recorded"/"replayed", "A"/"B"). A difference
// every listed rank has is printed once; one that only some ranks have is prefixed with them ("rank 1: ...").
std::vector<std::string> ranked_environment_lines(const std::vector<int>& ranks,
                                                  const std::vector<std::vector<EnvDifference>>& per_rank,
                                                  const std::string& left, const std::string& right);

// Two recorded runs compared step by step without re-running them: the sharding of each shard, each
// shard's gradient, the allreduce result, then the parameters.
RunReport diff_runs(const std::string& a, const std::string& b);

// An error naming the first rank trace of the run that holds no complete step (a recording cut or killed
// during its first step): such a run has nothing to compare, and replay, diff and bisect refuse it.
Status require_complete_steps(const trace::RunSet& run);

// Where the trace of a rank stops short of a footer: changed after it was written (damaged), or cut.
struct RankStop {
  int rank = -1;
  std::string path;
  bool damaged = false;
  int64_t steps = 0;               // complete steps read before it
  std::optional<uint64_t> offset;  // the byte where reading stopped (none: a cut between two messages)
};
// The complete steps of the rank with the fewest (a recording cut short: every rank's trace stops somewhere
// after its last complete step), which ranks' traces have no footer, and the trace that stops first (a
// damaged one before any cut one).
struct RunExtent {
  int64_t steps = 0;
  std::vector<int> cut;
  std::optional<RankStop> cut_stop;  // of the cut traces, the one that stops earliest
  // The ranks whose traces are still being recorded: read to their last complete step, neither cut nor
  // damaged.
  std::vector<int> live;
  std::string damage;  // the first rank trace changed after it was written: "rank 3: FILE: byte N: ..."
  std::optional<RankStop> stop;
  // The first rank whose footer says the run stopped before its schedule's end (an interrupted or failed
  // recording), and the footer's reason: the run is compared through the steps every trace holds, as a
  // replay of one process stops where its recording stopped.
  int stopped_rank = -1;
  std::string stopped_reason;
};
// "the recording stopped early (rank 0's footer: error: interrupted at step 10146), after step 10145: ..."
std::string stopped_early_note(const RunExtent& extent);
RunExtent run_extent(const trace::RunSet& run);
// The step a replay of the run asked to stop at `to_step` (-1: the end) stops at: the last step every rank's
// trace holds when a trace is cut or damaged or the recording stopped early, for the ranks step together.
int64_t replay_stop(const RunExtent& extent, int64_t to_step);
// Whether rank `rank`'s trace has no footer (cut short, not damaged).
bool rank_is_cut(const RunExtent& extent, int rank);
// "B rank 1 (m4.trr/rank1.trr) is cut short at byte 1800, after step 3 (a recording killed or cut there)"
std::string stop_words(const RankStop& stop, const std::string& side);
// A report's first line says `truncated` or `damaged` where a rank's trace stops short, with the rank, the
// byte and the last step read (a divergence keeps its first line and says it on the next).
// A recording stopped early adds a note (`to_step`: where the replay was asked to stop, -1 the end).
void headline_stop(const trace::RunSet& run, RunReport& report, int64_t to_step = -1);

// A reproduced replay's line that names the recorded allreduce: "  allreduce: VARIANT, ALGORITHM" (nothing
// where the report is not of a reproduced run or the traces hold no allreduce call).
void add_allreduce_line(const trace::RunSet& run, RunReport& report);
// Under mpirun, where the run reproduced: where this process's Open MPI, with the settings it runs with
// (`here`), picks another algorithm than the recording's for the run's first allreduce, a note says so (the
// results compared the same bits).
void add_algorithm_here_note(const trace::RunSet& run, const CollectiveSettings& here, RunReport& report);

// The notes a replay of a run adds to its report, as a replay of one process does: the configuration
// differences (--set) that every compared value survived, and each rank's environment differences from the
// environment of the process that replayed it. Without `process_environments`, ranks 0 .. hosted - 1 were
// replayed in this process; with them (a replay under mpirun, gathered at rank 0), process p replayed ranks
// p * hosted .. (p + 1) * hosted - 1, and `process_environments[p]` is packed_environment() of p. Each rank
// is compared with the environment it was replayed in: this machine's, with its own configuration.
void add_run_inputs(const trace::RunSet& run, const ForceSet& force,
                    const std::vector<std::string>& overrides, RunReport& report, int hosted,
                    const std::vector<std::string>* process_environments = nullptr);
// The environment each rank this process replays (`first` .. `first` + `hosted` - 1) runs in, with
// `overrides` and that rank's own configuration (its threads, its policy), packed for gathering; "" where a
// configuration does not parse (add_run_inputs then lists nothing).
std::string packed_environment(const trace::RunSet& run, const std::vector<std::string>& overrides, int first,
                               int hosted);

// The allreduce settings a rank's header recorded.
CollectiveSettings recorded_settings(const trace::TraceHeader& header);

// What differs between two allreduce calls whose inputs match: variant, algorithm, rank count, bucket
// layout, library version; "arrival order" when none of those does.
std::string collective_detail(const CollectiveCall& a, const CollectiveCall& b, const std::string& library_a,
                              const std::string& library_b);

}  // namespace trainrr
