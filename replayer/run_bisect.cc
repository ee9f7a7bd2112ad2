#include <optional>
#include <set>

#include "engine/kernels/kernel_registry.h"
#include "engine/local_group.h"
#include "replayer/bisect.h"
#include "replayer/divergence.h"
#include "replayer/runs.h"
#include "traces/trace_reader.h"

namespace trainrr {

namespace {

// Every rank's choice units recorded in steps 0..`to` (-1: every step), as "RANK|UNIT", those a free replay makes
// by a race (a first-ready loader, an autotuned or nondeterministic kernel, an arrival order), and the last step
// every rank's trace holds.
struct RunUnits {
  std::vector<std::string> all;
  std::set<std::string> racy;
  int64_t last_step = -1;
};

RunUnits units_up_to(const trace::RunSet& run, int64_t to, const KernelRegistry& registry) {
  RunUnits out;
  bool racy_loader = false;  // rank 0's loader hands out batches as they are ready
  for (int r = 0; r < run.world_size; ++r) {
    const std::string rank = std::to_string(r) + "|";
    std::set<std::string> units = {rank + "seed"};
    int64_t last = -1;
    auto reader = trace::TraceReader::open(run.paths[r], trace::without_payloads());
    if (!reader) continue;
    for (;;) {
      auto rec = (*reader)->next();
      if (!rec || !rec->has_value()) break;
      auto* st = std::get_if<trace::TraceStep>(&(*rec)->value);
      if (!st) continue;
      if (to >= 0 && st->index > to) break;
      last = st->index;
      for (const auto& e : st->events) {
        if (auto* k = std::get_if<KernelChoice>(&e)) {
          const std::string unit = rank + (k->site == "data/loader" ? "loader" : "kernel:" + k->site);
          units.insert(unit);
          const Kernel* kernel = registry.find(k->chosen);
          // The allreduce variant is chosen by policy or configuration, never by a race (its order is a unit
          // of its own, below). Every rank takes the batch rank 0's loader proposes (broadcast), and a rank's
          // recorded batch replaces it only where that rank's loader is forced: a racy loader on rank 0 makes
          // every rank's loader racy (below).
          if (kernel && !kernel->info.deterministic && kernel->info.op == OpKind::loader) {
            if (r == 0) racy_loader = true;
          } else if (k->reason.starts_with("autotune") ||
                     (kernel && !kernel->info.deterministic && kernel->info.op != OpKind::allreduce)) {
            out.racy.insert(unit);
          }
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
    out.last_step = r == 0 ? last : std::min(out.last_step, last);
    out.all.insert(out.all.end(), units.begin(), units.end());
  }
  if (racy_loader)
    for (int r = 0; r < run.world_size; ++r) out.racy.insert(std::to_string(r) + "|loader");
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
  if (Status s = require_complete_steps(*run); !s) return {2, s.error().message, {}};
  const int n = run->world_size;
  const CollectiveSettings settings = recorded_settings(run->headers[0]);
  int64_t replays = 0;
  // A replay of every rank through step `to` (exclusive), forcing the units `filter` accepts.
  auto replay_with = [&](const ForceSet& force, int64_t to,
                         std::function<bool(int, const std::string&)> filter,
                         std::vector<std::set<std::string>>* raced = nullptr) {
    LocalGroup group(n, settings);
    ++replays;
    return gathered_report(
        replay_hosted_ranks(*run, force, overrides, to, group, 0, n, std::move(filter), raced), n);
  };
  auto forcing = [](const std::set<std::string>& set) {
    return [set](int rank, const std::string& unit) { return set.count(std::to_string(rank) + "|" + unit) > 0; };
  };
  KernelRegistry registry;
  register_cpu_kernels(registry);
  const RunUnits recorded = units_up_to(*run, -1, registry);
  const int64_t last = recorded.last_step;
  // A rank trace cut short, or a recording stopped early: compared through the steps every trace holds, and
  // the report says so, as bisect of one trace does.
  const RunExtent extent = run_extent(*run);
  const std::string to_the_end =
      "through step " + std::to_string(last) +
      (extent.stop || extent.stopped_rank >= 0 ? ", the last every rank's trace holds"
                                               : ", the last recorded");
  auto said = [&](RunReport r) {
    if (r.exit_code >= 2 || r.lines.empty()) return r;
    if (extent.stop) {
      const std::string words =
          std::string(extent.stop->damaged ? "damaged: " : "truncated: ") + stop_words(*extent.stop, "");
      if (r.exit_code == 0)
        r.lines.front() = words + "; " + r.lines.front();
      else
        r.lines.insert(r.lines.begin() + 1, "  " + words + ": nothing after it is compared");
      // A damaged trace beside a cut one that ends first: the cut ends what is compared, and is said too.
      if (extent.stop->damaged && extent.cut_stop && extent.cut_stop->steps < extent.stop->steps)
        r.lines.insert(r.lines.begin() + 1,
                       "  truncated: " + stop_words(*extent.cut_stop, "") +
                           ": every rank is compared through the last step all traces hold");
    }
    if (const std::string note = stopped_early_note(extent); !note.empty()) r.lines.push_back(note);
    // A damaged rank trace is compared up to the damage, and the command exits 2 after its report.
    if (extent.stop && extent.stop->damaged) {
      r.exit_code = 2;
      r.error = stop_words(*extent.stop, "") + " (damaged: compared up to there)";
    }
    return r;
  };

  // Stage 1: every recorded choice left to this machine but those a race decides: left free, such a choice
  // matches the recording only by chance, and a replay that happens to match proves nothing.
  auto line_of = [](const std::string& u, const std::set<std::string>& racy) {
    std::string why;
    if (u.find("|kernel:allreduce/") != std::string::npos) why = " (the arrival order of this allreduce call)";
    else if (u.find("|kernel:grad/allreduce") != std::string::npos) why = " (the allreduce variant)";
    else if (racy.count(u)) why = " (racy: always forced)";
    return "  " + shown(u) + why;
  };
  // With every recorded choice forced the replay must reproduce, or no set of choices will: a --set that
  // changes the arithmetic, or data that differs. That is the answer, with its cause.
  RunReport forced_whole = replay_with(ForceSet::all(), -1, {});
  if (forced_whole.exit_code >= 2) return forced_whole;
  if (forced_whole.exit_code == 1) {
    RunReport out;
    out.exit_code = 1;
    out.step = forced_whole.step;
    out.lines.push_back("with every recorded choice forced the replay of the " + counted(n, "rank") + " " +
                        forced_whole.lines[0] + ": no choice to force reproduces the run (1 replay)");
    // Its last line says how gathered_report() thinks it ran: in threads here.
    for (size_t i = 1; i + 1 < forced_whole.lines.size(); ++i) out.lines.push_back(forced_whole.lines[i]);
    out.lines.push_back("  " + counted(n, "rank") + " replayed in one process (no mpirun)");
    return said(out);
  }
  std::vector<std::set<std::string>> raced;
  RunReport free_run = replay_with(ForceSet::all(), -1, forcing(recorded.racy), &raced);
  if (free_run.exit_code >= 2) return free_run;
  // The choices this replay makes by a race though the recording did not (bisect's own --set, such as
  // runtime.threads=2, gives rank 0 a first-ready loader): as racy as the recording's own, always forced.
  // Rank 0's loader decides every rank's batch; the allreduce variant is chosen by policy or configuration.
  std::set<std::string> replay_racy;
  for (int r = 0; r < static_cast<int>(raced.size()); ++r)
    for (const std::string& u : raced[r]) {
      if (u == "loader") {
        if (r == 0)
          for (int q = 0; q < n; ++q) replay_racy.insert(std::to_string(q) + "|loader");
      } else if (u != "kernel:grad/allreduce") {
        replay_racy.insert(std::to_string(r) + "|" + u);
      }
    }
  std::erase_if(replay_racy, [&](const std::string& u) {
    return recorded.racy.count(u) ||
           std::find(recorded.all.begin(), recorded.all.end(), u) == recorded.all.end();
  });
  std::set<std::string> racy = recorded.racy;
  racy.insert(replay_racy.begin(), replay_racy.end());
  std::string race_note;
  if (!replay_racy.empty()) {
    std::string list;
    for (const auto& u : replay_racy) list += (list.empty() ? "" : ", ") + shown(u);
    race_note =
        "  note: " + std::string(overrides.empty() ? "here" : "with this --set") +
        " the replay decides by a race choices the recording did not (" + list +
        (replay_racy.count("0|loader") ? "; rank 0's loader hands every rank its batch" : "") +
        "): a free replay " +
        (free_run.exit_code == 0 ? std::string("that reproduced matched the recording there by chance, "
                                               "and another may not")
                                 : "diverged (" + free_run.lines[0] + ")") +
        "; they are always forced, as the recording's racy choices are";
    free_run = replay_with(ForceSet::all(), -1, forcing(racy));
    if (free_run.exit_code >= 2) return free_run;
  }
  RunReport out;
  out.exit_code = 1;
  if (free_run.exit_code == 0) {
    if (racy.empty()) {
      out.exit_code = 0;
      out.lines.push_back("a free replay of the " + counted(n, "rank") + " reproduces bit for bit " +
                          to_the_end + ": nothing to force");
      return said(out);
    }
    out.lines.push_back("a replay of the " + counted(n, "rank") +
                        " in one process with only the choices a race " +
                        "decides forced reproduces bit for bit " + to_the_end + ": nothing else to force (" +
                        std::to_string(racy.size()) + " of " + std::to_string(recorded.all.size()) +
                        " choices, " + counted(replays - 1, "replay") + "):");
    for (const auto& u : racy) out.lines.push_back(line_of(u, racy));
    if (!race_note.empty()) out.lines.push_back(race_note);
    return said(out);
  }
  const std::string free_what =
      racy.empty() ? std::string("nothing forced")
                   : "nothing forced but the " + std::to_string(racy.size()) + " choices a race decides";
  int64_t step = free_run.step;
  out.lines.push_back("free replay (" + counted(n, "rank") + " in one process, " + free_what +
                      "): " + free_run.lines[0]);
  for (size_t i = 1; i + 1 < free_run.lines.size(); ++i) out.lines.push_back(free_run.lines[i]);
  if (!race_note.empty()) out.lines.push_back(race_note);

  // Stage 2: delta debugging over every rank's recorded choices up to that step. Racy choices are always
  // forced: one left free that happens to match proves nothing. The set is then replayed through the whole
  // run: where it differs later and every choice forced does not, the window grows to that step.
  RunUnits units;
  auto reproduces = [&](const std::vector<std::string>& chosen) {
    std::set<std::string> set(chosen.begin(), chosen.end());
    set.insert(units.racy.begin(), units.racy.end());
    return replay_with(ForceSet::all(), step + 1, forcing(set)).exit_code == 0;
  };
  std::vector<std::string> cur;
  std::string shown_through;    // how far the set reproduces, in words
  std::string stopped;          // why it reproduces no further
  bool reproduced = false;
  for (;;) {
    units = units_up_to(*run, step, registry);
    for (const auto& u : replay_racy)
      if (std::find(units.all.begin(), units.all.end(), u) != units.all.end()) units.racy.insert(u);
    std::vector<std::string> all;
    for (const auto& u : units.all)
      if (!units.racy.count(u)) all.push_back(u);
    cur = smallest_forced_set(all, units.racy, reproduces);
    RunReport whole = replay_with(ForceSet::all(), -1, forcing(std::set<std::string>(cur.begin(), cur.end())));
    if (whole.exit_code >= 2) return whole;
    if (whole.exit_code == 0) {
      reproduced = true;
      shown_through = to_the_end;
      break;
    }
    const int64_t at = whole.step;
    if (at <= step) {  // it reproduced through `step` in delta debugging: the replay does not repeat itself
      shown_through = "through step " + std::to_string(step);
      stopped = "replayed again with them forced, the run " + whole.lines[0] + " (the replay does not repeat "
                "itself here)";
      break;
    }
    step = at;  // the window grows to where the set first differs (every choice forced reproduces: above)
  }
  out.lines.push_back(std::string(reproduced ? "forcing these recorded choices reproduces"
                                             : "forcing these recorded choices does not reproduce") +
                      " every rank " + shown_through + " (" + std::to_string(cur.size()) + " of " +
                      std::to_string(units.all.size()) + " choices in steps 0.." + std::to_string(step) + ", " +
                      std::to_string(replays) + " replays)" + (stopped.empty() ? "" : "; " + stopped) + ":");
  for (const auto& u : cur) out.lines.push_back(line_of(u, units.racy));
  return said(out);
}

}  // namespace trainrr
