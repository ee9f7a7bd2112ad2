#pragma once
// Bisection: narrows a divergence between a recording and a free replay here with as little re-execution
// as possible. Stage 1 reads the trace without executing anything: recorded decisions a free run would
// not make (a gap in a stream's counters, an order the ordered loader would not hand out, a shuffle its
// draw does not give, a nondeterministic kernel, an unseeded run) or, with another trace, the first step
// whose recorded digests differ. Stage 2 replays from the nearest checkpoint before that step, recorded
// choices forced and free side by side, to the first divergent step. Stage 3 delta-debugs the recorded
// choices of that window down to the smallest set that, forced, reproduces bit for bit through it, then replays
// the rest of the recording with that set forced: where it differs and every choice forced does not, the window
// grows to that step and the search runs again. The result says how far the set was shown to reproduce.

#include <cstdio>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "replayer/divergence.h"

namespace trainrr {

struct BisectOptions {
  std::string trace_path;
  std::string against;                 // another trace of the same run (optional)
  std::vector<std::string> overrides;  // --set for the free replay, e.g. runtime.threads=1
  std::string data_path;
  FILE* log = nullptr;  // stage lines as they happen
  // Before each stage line: why the trace read is no longer the file at its path (another was put there),
  // or "". Said instead of the line, and bisect stops with it (exit 2).
  std::function<std::string()> replaced;
};

struct BisectResult {
  int exit_code = 0;  // 0 a free replay reproduces, 1 narrowed, 2 bad input, 3 cannot replay here
  std::string error;
  DivergenceReport report;
  std::vector<std::string> minimal;  // choice units that must be forced
  int64_t steps_executed = 0;
  int64_t steps_recorded = 0;
  int64_t replays = 0;  // delta-debugging replays
  std::optional<std::string> damage;  // the trace is damaged there: the command exits 2 after its report
};

// ddmin (Zeller) over `all`: a subset whose forcing still reproduces (`reproduces(subset)`, which forces
// `racy` too) and from which no unit can go, returned with `racy` added, sorted. The racy units alone are
// tried first; where the set holds several units the seed decides (rng:..., split, shuffle), the seed in
// their place is tried after, and kept when it makes the set smaller. Shared by the bisection of one trace
// and of a data-parallel run.
std::vector<std::string> smallest_forced_set(const std::vector<std::string>& all,
                                             const std::set<std::string>& racy,
                                             const std::function<bool(const std::vector<std::string>&)>& reproduces);

BisectResult bisect(const BisectOptions& options);

class KernelRegistry;
class ReplayHooks;
struct KernelChoice;
// Whether a kernel choice makes its result by a race: a kernel whose result depends on timing (a first-ready
// loader, a completion-order sum), or one picked by timing (autotune).
bool decided_by_a_race(const KernelChoice& choice, const KernelRegistry& registry);
// The units ("loader", "kernel:SITE") whose choice a free replay made by a race.
std::set<std::string> racy_in_replay(const ReplayHooks& hooks, const KernelRegistry& registry);

// The kind forced by a unit, as `replay --force` names it: "rng:augment/noise" -> "rng", "seed" -> "rng",
// "kernel:dense_1/matmul.fwd" -> "kernels".
std::string force_kind_of(const std::string& unit);

}  // namespace trainrr
