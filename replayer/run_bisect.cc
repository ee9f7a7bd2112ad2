#include <set>

#include "engine/kernels/kernel_registry.h"
#include "engine/local_group.h"
#include "replayer/bisect.h"
#include "replayer/runs.h"
#include "traces/trace_reader.h"

namespace trainrr {

namespace {

// Every rank's choice units recorded in steps 0..`to`, as "RANK|UNIT", and those a free replay makes by a race
// (a first-ready loader, an autotuned or nondeterministic kernel, an arrival order).
struct RunUnits {
  std::vector<std::string> all;
  std::set<std::string> racy;
};

RunUnits units_up_to(const trace::RunSet& run, int64_t to, const KernelRegistry& registry) {
  RunUnits out;
  for (int r = 0; r < run.world_size; ++r) {
    const std::string rank = std::to_string(r) + "|";
    std::set<std::string> units = {rank + "seed"};
    auto reader = trace::TraceReader::open(run.paths[r]);
    if (!reader) continue;
    for (;;) {
      auto rec = (*reader)->next();
      if (!rec || !rec->has_value()) break;
      auto* st = std::get_if<trace::TraceStep>(&(*rec)->value);
      if (!st) continue;
      if (st->index > to) break;
      for (const auto& e : st->events) {
        if (auto* k = std::get_if<KernelChoice>(&e)) {
          const std::string unit = rank + (k->site == "data/loader" ? "loader" : "kernel:" + k->site);
          units.insert(unit);
          const Kernel* kernel = registry.find(k->chosen);
          // The allreduce variant is chosen by policy or configuration, never by a race (its order is a unit
          // of its own, below).
          // Every rank takes rank 0's batch (broadcast): only rank 0's loader can race.
          if (k->reason.starts_with("autotune") ||
              (kernel && !kernel->info.deterministic && kernel->info.op != OpKind::allreduce &&
               (kernel->info.op != OpKind::loader || r == 0)))
            out.racy.insert(unit);
        }
        if (auto* a = std::get_if<trace::AccumulationOrderEvent>(&e)) {
          units.insert(rank + "kernel:" + a->site);
          // An allreduce's arrival order is rank 0's, which adds the sums; the other ranks record it as broadcast.
          if (r == 0 || a->site.rfind("allreduce/", 0) != 0) out.racy.insert(rank + "kernel:" + a->site);
        }
        if (auto* d = std::get_if<trace::RngDrawEvent>(&e)) units.insert(rank + "rng:" + d->draw.stream);
        if (std::holds_alternative<trace::SplitEvent>(e)) units.insert(rank + "split");
        if (std::holds_alternative<trace::ShuffleEvent>(e)) units.insert(rank + "shuffle");
        if (std::holds_alternative<trace::BatchOrderEvent>(e)) units.insert(rank + "loader");
      }
    }
    out.all.insert(out.all.end(), units.begin(), units.end());
  }
  std::erase_if(out.racy, [&](const std::string& u) { return std::find(out.all.begin(), out.all.end(), u) == out.all.end(); });
  return out;
}

// "rank 2: kernel:allreduce/bucket_0"
std::string shown(const std::string& unit) {
  const size_t bar = unit.find('|');
  return "rank " + unit.substr(0, bar) + ": " + unit.substr(bar + 1);
}

}  // namespace

RunReport bisect_run(const std::string& folder, const std::vector<std::string>& overrides) {
  auto run = trace::open_run(folder);
  if (!run) return {2, run.error().message, {}};
  const int n = run->world_size;
  const CollectiveSettings settings = recorded_settings(run->headers[0]);
  int64_t replays = 0;
  // A replay of every rank through step `to` (exclusive), forcing the units `filter` accepts.
  auto replay_with = [&](const ForceSet& force, int64_t to, std::function<bool(int, const std::string&)> filter) {
    LocalGroup group(n, settings);
    ++replays;
    return gathered_report(replay_hosted_ranks(*run, force, overrides, to, group, 0, n, std::move(filter)), n);
  };
  // Stage 1: a free replay, every recorded choice left to this machine.
  RunReport free_run = replay_with(ForceSet::none(), -1, {});
  if (free_run.exit_code >= 2) return free_run;
  RunReport out;
  if (free_run.exit_code == 0) {
    out.lines.push_back("a free replay of the " + std::to_string(n) + " ranks reproduces bit for bit: nothing to force");
    return out;
  }
  // Its first line: "diverged at step S, rank R, ...".
  int64_t step = 0;
  std::sscanf(free_run.lines[0].c_str(), "diverged at step %ld", &step);
  out.exit_code = 1;
  out.lines.push_back("free replay (" + std::to_string(n) + " ranks in one process, nothing forced): " + free_run.lines[0]);
  for (size_t i = 1; i + 1 < free_run.lines.size(); ++i) out.lines.push_back(free_run.lines[i]);

  // Stage 2: delta debugging over every rank's recorded choices up to that step. Racy choices are always
  // forced: one left free that happens to match proves nothing.
  KernelRegistry registry;
  register_cpu_kernels(registry);
  const RunUnits units = units_up_to(*run, step, registry);
  std::vector<std::string> all;
  for (const auto& u : units.all)
    if (!units.racy.count(u)) all.push_back(u);
  auto reproduces = [&](const std::vector<std::string>& chosen) {
    std::set<std::string> set(chosen.begin(), chosen.end());
    set.insert(units.racy.begin(), units.racy.end());
    RunReport r = replay_with(ForceSet::all(), step + 1, [set](int rank, const std::string& unit) {
      return set.count(std::to_string(rank) + "|" + unit) > 0;
    });
    return r.exit_code == 0;
  };
  const std::vector<std::string> cur = smallest_forced_set(all, units.racy, reproduces);
  const bool confirmed = reproduces(cur);
  out.lines.push_back(std::string(confirmed ? "forcing these recorded choices reproduces" : "forcing these recorded choices does not reproduce") +
                      " every rank through step " + std::to_string(step) + " (" + std::to_string(cur.size()) + " of " +
                      std::to_string(units.all.size()) + " choices, " + std::to_string(replays) + " replays):");
  for (const auto& u : cur) {
    std::string why;
    if (u.find("|kernel:allreduce/") != std::string::npos) why = " (the arrival order of this allreduce call)";
    else if (u.find("|kernel:grad/allreduce") != std::string::npos) why = " (the allreduce variant)";
    else if (units.racy.count(u)) why = " (racy: always forced)";
    out.lines.push_back("  " + shown(u) + why);
  }
  return out;
}

}  // namespace trainrr
