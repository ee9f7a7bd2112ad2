#include <algorithm>
#include <climits>
#include <optional>
#include <system_error>
#include <thread>
#include <tuple>

#include "engine/config.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/local_group.h"
#include "engine/model.h"
#include "engine/trainer.h"
#include "replayer/bisect.h"
#include "replayer/cause.h"
#include "replayer/final_state.h"
#include "replayer/replay_hooks.h"
#include "replayer/replayer.h"
#include "replayer/runs.h"
#include "replayer/scratch.h"
#include "traces/trace_reader.h"

namespace trainrr {

using Environment = std::vector<std::pair<std::string, std::string>>;

namespace {

std::string env_value(const trace::TraceHeader& h, const std::string& key) {
  for (const auto& [k, v] : h.environment)
    if (k == key) return v;
  return "";
}

std::string list(const std::vector<uint32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string algorithm_text(const CollectiveCall& c) {
  return c.algorithm + (c.algorithm_inferred ? " (inferred from Open MPI 4.1's decision table)" : "");
}

// A rebuild_config() error in a run's words: a run takes neither --data nor --allow-data-change.
std::string for_a_run(std::string message) {
  const std::pair<std::string, std::string> hints[] = {{"; pass --allow-data-change to replay anyway",
                                                        "; a data-parallel run replays only on the data its "
                                                        "traces record: restore that file, or record the run "
                                                        "with --embed-data to keep its data in the traces"},
                                                       {": pass --data PATH, or record with --embed-data",
                                                        ": a data-parallel run replays only on the data its "
                                                        "traces record: restore that file, or record the run "
                                                        "with --embed-data to keep its data in the traces"}};
  for (const auto& [hint, instead] : hints)
    if (const size_t at = message.find(hint); at != std::string::npos)
      message.replace(at, hint.size(), instead);
  return message;
}

// What the replay of a rank was asked to run that the recording did not: the configuration keys whose values
// differ (cause.h), and the model's layers, to place them.
struct RankInputs {
  std::vector<std::string> config_differences;
  std::vector<std::string> layers;
  bool split_forced = false;
  // The rank's configuration and the kernels this process knows: what a state that differs while every step
  // matched is weighed with (the environment it is replayed in among them).
  const RunConfig* config = nullptr;
  const KernelRegistry* registry = nullptr;
};

RankInputs rank_inputs(const trace::TraceHeader& header, const RunConfig& config, const ForceSet& force,
                       const KernelRegistry& registry) {
  return {config_differences(header, config), layer_names(config.layers), force.split, &config, &registry};
}

// A rank's recorded environment without its MPI settings, which are the run's own (reported with the
// allreduce).
Environment recorded_without_mpi(const trace::TraceHeader& header) {
  Environment recorded;
  for (const auto& kv : header.environment)
    if (kv.first.rfind("mpi.", 0) != 0) recorded.push_back(kv);
  return recorded;
}

// Whether a replay through `to_step` (-1: the run's end) reaches the end of every rank's trace, each whole:
// a completed run's end, or that of a run stopped early (Ctrl-C), whose final state is the state after the
// last step every trace holds.
bool to_footer(const RunExtent& e, int64_t to_step) {
  return (to_step < 0 || to_step >= e.steps) && e.damage.empty() && e.cut.empty() && e.live.empty();
}

// Runs `side` through `to_step` (-1: the run's end) as fit() does, step by step, and compares the states the
// trace holds on the way with those the rank's run is in there, as a replay of one process does: the initial
// state before step 0, each checkpoint of --checkpoint-every after its step, and, where `read_to_footer` (the
// whole run replayed, its trace complete), the final state. The first that differs is the rank's divergence
// where no event came before it: what the steps do not compare (an optimizer's slots, the epoch's counts,
// the random streams' offsets) is compared there.
// A run whose schedule goes on past the steps the traces hold (a --set of train.epochs) stops after the last,
// every rank alike (`trace_steps`, the run's extent), as a replay of one process stops where its trace ends:
// `trace_first` says so.
Status fit_comparing_states(const std::string& path, ReplaySide& side, int64_t to_step, bool read_to_footer,
                            int64_t trace_steps, bool& trace_first) {
  Training& t = *side.training;
  ReplayHooks& hooks = *side.hooks;
  int64_t end = to_step >= 0 ? std::min(to_step, t.total_steps()) : t.total_steps();
  trace_first = to_step < 0 && end > trace_steps;
  end = std::min(end, trace_steps);
  if (t.step() == 0 && end > 0 && !hooks.diverged())
    if (auto d = initial_state_difference(path, side)) hooks.diverge_at_end(std::move(*d));
  while (t.step() < end) {
    if (Status s = t.fit(t.step() + 1); !s) return s;
    if (!hooks.diverged())
      if (auto d = checkpoint_difference(path, side)) hooks.diverge_at_end(std::move(*d));
  }
  if (!read_to_footer) return {};
  // Reads on to the footer, if the trace has one.
  if (hooks.at_end() && !hooks.diverged() && t.step() > 0 && hooks.trace_ended_cleanly() &&
      !hooks.trace_damage())
    if (auto d = final_state_difference(path, side)) hooks.diverge_at_end(std::move(*d));
  return {};
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : "; ") + x;
  return s;
}

// What rank `rank`'s replay hooks found: its first difference and its cause, or nothing.
// `whole`: the replay ran to the end of the run, so a trace without a footer was cut. `damage_known`: the
// run's extent holds the damage of a rank trace, so the replay stopped before it and its report says so;
// damage the hooks read past the last step compared (in a final checkpoint, say) is that damage.
RankReplay analyze_rank(const ReplayHooks& h, int rank, const trace::TraceHeader& header,
                        const CollectiveSettings& settings, const RankInputs& in, bool whole,
                        bool cut_short = false, bool damage_known = false, bool replay_first = false,
                        bool trace_first = false) {
  RankReplay out;
  // A damaged trace (changed after it was written) is not compared past the damage: bad input, as for one trace.
  if (const auto damage = h.trace_damage(); damage && !damage_known) return {2, -1, 0, *damage};
  std::optional<std::pair<int64_t, int>> at;
  if (const auto& m = h.collective_mismatch())
    at = {m->recorded.step, m->kind == "sharding" ? 0 : m->kind == "input" ? 1 : 2};
  // The input pipeline (split, shuffle, the loader's batch order) comes before the sharding of its batch: a
  // batch that differs makes every shard's rows differ.
  // So does whatever the run makes before it (the draws of the set-up: the initial weights, the split's).
  const bool input =
      h.first() && h.first()->kind != "state" &&
      (h.first()->kind == "loader" || h.first()->kind == "shuffle" || h.first()->kind == "split" ||
       h.first()->phase == "setup" || h.first()->phase == "input");
  // A state that differs (from a checkpoint the trace holds) is found after its step's events: the initial
  // state's comes before step 0's.
  const bool state = h.first() && h.first()->kind == "state";
  const bool initial = state && h.first()->phase == "setup";
  if (h.first() &&
      (!at || h.first()->step < at->first || ((input || initial) && h.first()->step == at->first)))
    at = {h.first()->step, initial ? -2 : input ? -1 : 3};
  // "|cut" marks a trace without its footer: compared as far as its complete steps go; "|first" a replay
  // whose run ended before the trace's steps did (a --set of train.epochs), "|trace_first" one whose run goes
  // on past them.
  const std::string cut = replay_first                                       ? "|first"
                          : trace_first                                      ? "|trace_first"
                          : cut_short || (whole && !h.trace_ended_cleanly()) ? "|cut"
                                                                             : "";
  if (!at) {
    out.text = std::to_string(h.steps_compared()) + "|" + std::to_string(h.collectives_compared()) + cut;
    return out;
  }
  out.exit_code = 1;
  out.step = at->first;
  out.priority = at->second;
  const std::string head = "diverged at step " + std::to_string(out.step) + ", rank " + std::to_string(rank);
  // The event the cause is placed by, for the configuration's differences.
  FirstDivergence d;
  std::string cause;
  if (out.priority >= 0 && out.priority < 3) {
    const auto& m = *h.collective_mismatch();
    out.text = head + ", allreduce/bucket_" + std::to_string(m.recorded.bucket) + " (" + m.recorded.variant + ")\n";
    d = divergence(out.step,
                   m.kind == "sharding" ? "input"
                   : m.kind == "input"  ? "backward"
                                        : "allreduce",
                   m.kind == "sharding" ? "sharding" : "collective",
                   "allreduce/bucket_" + std::to_string(m.recorded.bucket));
    if (m.kind == "sharding")
      cause = "data/sharding: the rows of shard " + std::to_string(m.shard) + " (rank " +
              std::to_string(rank) + ") differ from the recording's";
    else if (m.kind == "input") {
      // The kernels this rank chose other than its recording did: a shard's gradient with its rows the same
      // differs for them (another instruction set on this machine, say). The parameters at the step's end
      // differ after the allreduce, as a consequence: not evidence.
      // A recorded kernel that was forced but cannot run here (another instruction set) says so, as a replay
      // of one process notes it.
      std::string kernels;
      size_t other = 0, substituted = 0;
      for (const auto& [site, kernel] : h.recorded_kernels())
        if (auto it = h.replayed_kernels().find(site);
            it != h.replayed_kernels().end() && it->second != kernel) {
          kernels += (kernels.empty() ? "" : "; ") + site + ": " + kernel + " (recorded) vs " + it->second;
          ++other;
          bool replaced = false;
          for (const auto& s : h.substituted())
            replaced = replaced || (s.site == site && s.recorded == kernel);
          substituted += replaced;
        }
      if (substituted > 0)
        kernels += substituted == other
                       ? " (the recorded kernels cannot run here: this machine's choice ran in "
                         "their place)"
                       : " (" + std::to_string(substituted) +
                             " of the recorded kernels cannot run "
                             "here: this machine's choice ran in their place)";
      const bool before_end = h.first() && h.first()->kind != "step_end";
      cause = "upstream of the allreduce: rank " + std::to_string(rank) + "'s gradient of shard " +
              std::to_string(m.shard) + " differs from the recording's" +
              (!kernels.empty() ? "; it ran other kernels than recorded: " + kernels
               : before_end     ? " (its first difference: " + h.first()->site + ")"
                                : std::string());
    } else
      cause = "collective: every rank's input to the allreduce matches the recording, its result differs: " +
              collective_detail(m.recorded, m.replayed, settings.library, settings.library);
  } else if (state) {
    d = *h.first();
    out.text = state_headline(d) + ", rank " + std::to_string(rank) + site_words(d) + "\n";
    // As for one process: the state's place in the run is the recorded choices', and its tensors are what
    // the steps computed, which compared the same.
    CauseInputs ci;
    ci.layer_names = in.layers;
    if (auto now = current_environment(*in.config))
      ci.environment = environment_differences(recorded_without_mpi(header), *now);
    ci.registry = in.registry;
    ci.kernels = h.recorded_kernels();
    for (const auto& [site, kernel] : h.recorded_kernels())
      if (auto it = h.replayed_kernels().find(site); it != h.replayed_kernels().end() && it->second != kernel)
        ci.kernel_differences[site] = {kernel, it->second};
    ci.seed_recorded = header.seed;
    ci.seed_replayed = h.replayed_seed();
    const Cause c = classify(d, ci);
    cause = c.category + ": " + c.detail;
    if (c.detail.find(d.detail) == std::string::npos) cause += "\n  what: " + d.detail;
  } else {
    d = *h.first();
    out.text = head + ", " + d.site + " (" + d.phase + ")\n";
    if (input) {
      cause = d.kind + ": " + d.detail;
      if (d.kind == "loader" && d.detail.find("first_ready") != std::string::npos)
        cause += "; a first-ready loader hands out batches in the order its workers finish";
    } else if (d.phase == "forward") {
      // The loss is computed before the backward pass and the allreduce, which matched: only its own sum
      // over the rank's shards (or the trace) can differ.
      cause =
          "the loss alone: every shard's gradient and every allreduce call of the step matched the "
          "recording, and the rank's loss, computed before them, differs; " +
          (d.detail.empty() ? std::string("the step's end differs") : d.detail);
    } else {
      cause = "after the allreduce: every allreduce call of the step matched the recording; " +
              (d.detail.empty() ? std::string("the step's end differs") : d.detail);
    }
  }
  // A configuration difference that can change this event is its cause, as for one process; the forced
  // choices serve the recorded seed, and the recorded split, in place of the configuration's.
  std::vector<std::string> reaching, apart, length;
  for (const std::string& c : in.config_differences) {
    const bool served =
        (c.rfind("seed: ", 0) == 0 && h.replayed_seed() == header.seed) ||
        (in.split_forced && (c.rfind("data.test_fraction: ", 0) == 0 || c.rfind("data.stratify: ", 0) == 0 ||
                             c.rfind("data.split", 0) == 0));
    if (served) continue;
    if (changes_only_length(c))
      length.push_back(c);
    else
      (difference_reaches(c, d, in.layers) ? reaching : apart).push_back(c);
  }
  if (!reaching.empty()) {
    out.text += "  cause: config: the run configuration differs: " + joined(reaching) + "\n  what: " + cause;
  } else {
    out.text += "  cause: " + cause;
  }
  if (!apart.empty())
    out.text += "\n  note: the configuration differs from the recording's too (" + joined(apart) +
                "), in nothing the first difference depends on: " + reach_words(apart, d);
  if (!length.empty())
    out.text += "\n  note: the configuration differs from the recording's (" + joined(length) +
                "), which changes how many steps run, not what a step computes";
  return out;
}

}  // namespace

RankReplay replay_one_rank(const trace::RunSet& run, int rank, const ForceSet& force,
                           const std::vector<std::string>& overrides, int64_t to_step, Collective& comm) {
  RankReplay out;
  auto scratch = ScratchDir::create("trainrr-rank");
  if (!scratch) return {2, -1, 0, scratch.error().message};
  auto rebuilt = rebuild_config(run.headers[rank], overrides, "", false, *scratch);
  if (!rebuilt) return {2, -1, 0, run.paths[rank] + ": " + for_a_run(rebuilt.error().message)};
  // As in one process (replay_ranks).
  const RunExtent extent = run_extent(run);
  to_step = replay_stop(extent, to_step);
  const bool cut = rank_is_cut(extent, rank);
  KernelRegistry registry;
  register_cpu_kernels(registry);
  try {
    auto side = make_replay_side(run.paths[rank], rebuilt->config, registry, force, {}, run.headers[rank].level, true,
                                 0, &comm);
    if (!side)
      return {side.error().machine ? 3 : 2, -1, 0,
              (side.error().machine ? "cannot replay here: " : "") + run.paths[rank] + ": " +
                  side.error().message};
    bool trace_first = false;
    if (Status s = fit_comparing_states(run.paths[rank], *side, to_step, to_footer(extent, to_step),
                                        extent.steps, trace_first);
        !s)
      return {2, -1, 0, run.paths[rank] + ": " + s.error().message};
    const bool replay_first = to_step < 0 && !side->hooks->at_end();
    return analyze_rank(*side->hooks, rank, run.headers[rank], recorded_settings(run.headers[0]),
                        rank_inputs(run.headers[rank], rebuilt->config, force, registry), to_step < 0 || cut,
                        cut, !extent.damage.empty(), replay_first, trace_first);
  } catch (const std::exception& e) {
    return {2, -1, 0, run.paths[rank] + ": " + e.what()};
  }
}

RunReport gathered_report(const std::vector<std::string>& packed, int ranks) {
  RunReport out;
  std::optional<std::tuple<int64_t, int, int>> best;
  std::vector<RankReplay> all;
  for (int r = 0; r < static_cast<int>(packed.size()); ++r) {
    const std::string& p = packed[r];
    RankReplay x;
    size_t a = p.find('|'), b = p.find('|', a + 1), c = p.find('|', b + 1);
    x.exit_code = std::stoi(p.substr(0, a));
    x.step = std::stoll(p.substr(a + 1, b - a - 1));
    x.priority = std::stoi(p.substr(b + 1, c - b - 1));
    x.text = p.substr(c + 1);
    if (x.exit_code >= 2)
      return {x.exit_code, x.text.rfind("rank ", 0) == 0 ? x.text : "rank " + std::to_string(r) + ": " + x.text, {}};
    if (x.exit_code == 1 && (!best || std::make_tuple(x.step, x.priority, r) < *best)) best = {x.step, x.priority, r};
    all.push_back(std::move(x));
  }
  const std::string how = counted(ranks, "rank") + " replayed under mpirun, each checking its own trace";
  std::vector<std::string> cut;
  for (size_t r = 0; r < all.size(); ++r)
    if (all[r].exit_code == 0 && all[r].text.ends_with("|cut")) cut.push_back(std::to_string(r));
  std::string cut_note;
  if (!cut.empty()) {
    std::string ranks;
    for (size_t i = 0; i < cut.size(); ++i) ranks += (i ? ", " : "") + cut[i];
    cut_note = "  note: the trace" + std::string(cut.size() == 1 ? " of rank " : "s of ranks ") + ranks +
               " ha" + (cut.size() == 1 ? "s" : "ve") +
               " no footer (the recording was cut): every rank compared through " +
               "the last step all traces hold";
  }
  // A replay whose run ended before its traces did: every rank stops at its schedule's end.
  const bool replay_first = !all.empty() && all[0].exit_code == 0 && all[0].text.ends_with("|first");
  const bool trace_first = !all.empty() && all[0].exit_code == 0 && all[0].text.ends_with("|trace_first");
  if (!best) {
    const std::string& t = all[0].text;
    const size_t bar = t.find('|');
    out.lines.push_back("reproduced bit for bit: " + how + ", " + counted(std::stoll(t.substr(0, bar)), "step") +
                        " and " + counted(std::stoll(t.substr(bar + 1)), "allreduce call") + " compared per rank" +
                        (cut.empty() ? "" : " (as far as every trace goes)"));
    if (!cut_note.empty()) out.lines.push_back(cut_note);
    if (replay_first) {
      const int64_t n = std::stoll(t.substr(0, bar));
      out.lines.push_back("  note: the replay stops first, at the end of its " + counted(n, "step") +
                          ": the traces' steps from step " + std::to_string(n) + " on are not compared");
    }
    if (trace_first) {
      const int64_t n = std::stoll(t.substr(0, bar));
      out.lines.push_back("  note: the traces stop first, after their " + counted(n, "step") +
                          ": the replay's steps from step " + std::to_string(n) + " on are not compared");
    }
    return out;
  }
  out.exit_code = 1;
  out.step = std::get<0>(*best);
  std::string text = all[std::get<2>(*best)].text;
  for (size_t nl; (nl = text.find('\n')) != std::string::npos; text = text.substr(nl + 1))
    out.lines.push_back(text.substr(0, nl));
  out.lines.push_back(text);
  out.lines.push_back("  " + how);
  if (!cut_note.empty()) out.lines.push_back(cut_note);
  return out;
}

CollectiveSettings recorded_settings(const trace::TraceHeader& h) {
  CollectiveSettings s;
  s.library = env_value(h, "mpi.library");
  s.dynamic_rules = env_value(h, "mpi.coll_tuned_use_dynamic_rules") == "true";
  s.components = env_value(h, "mpi.coll");
  s.rules_file = env_value(h, "mpi.coll_tuned_dynamic_rules_filename");
  s.priorities = env_value(h, "mpi.coll_priorities");
  try {
    s.forced_algorithm = std::stoi(env_value(h, "mpi.coll_tuned_allreduce_algorithm"));
    s.segment_bytes = std::stoll(env_value(h, "mpi.coll_tuned_allreduce_algorithm_segmentsize"));
  } catch (const std::exception&) {
  }
  return s;
}

std::string collective_detail(const CollectiveCall& a, const CollectiveCall& b, const std::string& library_a,
                              const std::string& library_b) {
  std::vector<std::string> d;
  if (a.variant != b.variant) d.push_back("variant " + a.variant + " vs " + b.variant);
  if (a.ranks != b.ranks) d.push_back("rank count " + std::to_string(a.ranks) + " vs " + std::to_string(b.ranks));
  if (a.algorithm != b.algorithm || a.algorithm_inferred != b.algorithm_inferred)
    d.push_back("algorithm " + algorithm_text(a) + " vs " + algorithm_text(b));
  if (a.offset != b.offset || a.count != b.count)
    d.push_back("bucket layout: elements " + std::to_string(a.offset) + "+" + std::to_string(a.count) + " vs " +
                std::to_string(b.offset) + "+" + std::to_string(b.count));
  if (library_a != library_b) d.push_back("library " + library_a + " vs " + library_b);
  if (d.empty())
    return "arrival order: variant, algorithm, rank count, bucket layout and library are the same" +
           (a.order != b.order ? "; ranks added in order " + list(a.order) + " vs " + list(b.order)
                               : std::string());
  std::string s;
  for (const auto& x : d) s += (s.empty() ? "" : "; ") + x;
  return s;
}

int64_t replay_stop(const RunExtent& extent, int64_t to_step) {
  // A recording stopped early (interrupted) has a schedule that goes on past what it recorded.
  const bool short_run =
      !extent.cut.empty() || !extent.live.empty() || extent.stopped_rank >= 0 || !extent.damage.empty();
  return short_run && (to_step < 0 || to_step > extent.steps) ? extent.steps : to_step;
}

bool rank_is_cut(const RunExtent& extent, int rank) {
  return std::find(extent.cut.begin(), extent.cut.end(), rank) != extent.cut.end();
}

RunExtent run_extent(const trace::RunSet& run) {
  RunExtent e;
  e.steps = INT64_MAX;
  for (int r = 0; r < run.world_size; ++r) {
    RankStop stop;
    stop.rank = r;
    stop.path = run.paths[r];
    bool footer = false;
    bool live = false;
    if (auto reader = trace::TraceReader::open(run.paths[r], trace::without_payloads()))
      for (;;) {
        live = (*reader)->still_recording().has_value();
        auto rec = (*reader)->next();
        if (!rec) {
          if (const auto& at = (*reader)->stopped()) {
            stop.offset = at->offset;
            stop.damaged = !at->truncated;
          }
          if (stop.damaged && e.damage.empty())
            e.damage = "rank " + std::to_string(r) + ": " + rec.error().message +
                       (rec.error().message.find("damaged") == std::string::npos ? " (damaged)" : "");
          break;
        }
        if (!*rec) break;
        if (const auto* st = std::get_if<trace::TraceStep>(&(*rec)->value); st && st->end)
          stop.steps = st->index + 1;
        if (const auto* f = std::get_if<trace::TraceFooter>(&(*rec)->value)) {
          footer = true;
          if (!f->completed && e.stopped_rank < 0) {
            e.stopped_rank = r;
            e.stopped_reason = f->end_reason;
          }
        }
      }
    e.steps = std::min(e.steps, stop.steps);
    if (footer && !stop.damaged) continue;
    if (live && !stop.damaged) {
      e.live.push_back(r);
      continue;
    }
    if (!stop.damaged) {
      e.cut.push_back(r);
      if (!e.cut_stop || stop.steps < e.cut_stop->steps) e.cut_stop = stop;
    }
    // The damaged trace first, then the one that stops earliest.
    if (!e.stop || (stop.damaged && !e.stop->damaged) ||
        (stop.damaged == e.stop->damaged && stop.steps < e.stop->steps))
      e.stop = stop;
  }
  return e;
}

std::string stop_words(const RankStop& s, const std::string& side) {
  const std::string who =
      (side.empty() ? "" : side + " ") + "rank " + std::to_string(s.rank) + " (" + s.path + ")";
  const std::string after =
      s.steps > 0 ? "after step " + std::to_string(s.steps - 1) : "before its first step ends";
  return stop_sentence(who, after, s.damaged, s.offset);
}

std::string stopped_early_note(const RunExtent& e) {
  if (e.stopped_rank < 0) return "";
  return "  note: the recording stopped early (rank " + std::to_string(e.stopped_rank) +
         "'s footer: " + e.stopped_reason + "): every rank was compared through step " +
         std::to_string(e.steps - 1) +
         ", the last every trace holds, and the replay stops there, as the recording did";
}

void headline_stop(const trace::RunSet& run, RunReport& report, int64_t to_step) {
  const RunExtent extent = run_extent(run);
  if (const std::string note = stopped_early_note(extent);
      !note.empty() && report.exit_code < 2 && (to_step < 0 || to_step > extent.steps))
    report.lines.push_back(note);
  // A range that runs past the run's end is replayed to the end, as for one process.
  if (to_step > extent.steps && extent.live.empty() && !extent.stop && extent.stopped_rank < 0 &&
      report.exit_code < 2 && !report.lines.empty())
    report.lines.push_back("  note: --to-step " + std::to_string(to_step) +
                           " is past the run's end: it has steps 0.." + std::to_string(extent.steps - 1) +
                           ", replayed to the last");
  if (!extent.live.empty() && report.exit_code < 2 && !report.lines.empty() &&
      (to_step < 0 || to_step > extent.steps)) {
    std::string ranks;
    for (size_t i = 0; i < extent.live.size(); ++i) ranks += (i ? ", " : "") + std::to_string(extent.live[i]);
    report.lines.push_back(
        "  note: the trace" + std::string(extent.live.size() == 1 ? " of rank " : "s of ranks ") + ranks +
        (extent.live.size() == 1 ? " is" : " are") +
        " still being recorded: every rank was compared as far as every trace held complete "
        "steps when it was read");
  }
  if (!extent.stop || report.lines.empty()) return;
  const std::string words = stop_words(*extent.stop, "");
  // A damaged trace and a cut one: the cut one ends the comparison first, and is said too.
  if (extent.stop->damaged && extent.cut_stop && extent.cut_stop->steps < extent.stop->steps)
    report.lines.insert(report.lines.begin() + 1, "  truncated: " + stop_words(*extent.cut_stop, "") +
                                                      ": every rank is compared through the last step all "
                                                      "traces hold");
  const char* status = extent.stop->damaged ? "damaged" : "truncated";
  if (report.exit_code == 0) {
    std::string& first = report.lines.front();
    const std::string tail = " (as far as every trace goes)";
    if (first.ends_with(tail)) first.resize(first.size() - tail.size());
    const std::string said = "reproduced bit for bit: ";
    if (first.rfind(said, 0) == 0) first = first.substr(said.size());
    first = std::string(status) + ": " + words +
            (to_step >= 0 && to_step <= extent.stop->steps
                 ? "; the steps before --to-step " + std::to_string(to_step) + " reproduced bit for bit: "
                 : std::string("; the steps every rank's trace holds reproduced bit for bit: ")) +
            first;
  } else if (report.exit_code == 1) {
    report.lines.insert(report.lines.begin() + 1,
                        "  " + std::string(status) + ": " + words + ": nothing after it is compared");
  }
  // A damaged rank trace is compared up to the damage, and the command exits 2 after its report.
  if (extent.stop->damaged && report.exit_code < 2) {
    report.exit_code = 2;
    report.error = words + " (damaged: compared up to there)";
  }
}

std::optional<CollectiveCall> first_collective(const trace::RunSet& run) {
  auto reader = trace::TraceReader::open(run.paths[0], trace::without_payloads());
  if (!reader) return std::nullopt;
  for (;;) {
    auto record = (*reader)->next();
    if (!record || !*record) return std::nullopt;
    if (const auto* step = std::get_if<trace::TraceStep>(&(*record)->value); step && !step->collectives.empty())
      return step->collectives[0];
  }
}

void add_allreduce_line(const trace::RunSet& run, RunReport& report) {
  if (report.exit_code != 0) return;
  auto reader = trace::TraceReader::open(run.paths[0], trace::without_payloads());
  if (!reader) return;
  for (;;) {
    auto record = (*reader)->next();
    if (!record || !*record) return;
    const auto* step = std::get_if<trace::TraceStep>(&(*record)->value);
    if (!step || step->collectives.empty()) continue;
    // Each bucket's algorithm, where they ran others.
    CollectiveCall c = step->collectives[0];
    c.algorithm = bucket_algorithms(step->collectives);
    report.lines.push_back("  allreduce: " + c.variant + ", " + algorithm_text(c));
    return;
  }
}

void add_algorithm_here_note(const trace::RunSet& run, const CollectiveSettings& here, RunReport& report) {
  if (report.exit_code != 0) return;
  const std::optional<CollectiveCall> recorded = first_collective(run);
  if (!recorded || recorded->variant != kAllreduceMpi) return;
  CollectiveCall now;
  describe_mpi_algorithm(here, run.world_size, recorded->count * 4, now);
  if (now.algorithm == recorded->algorithm) return;
  // "ran rabenseifner (inferred ...)", or "ran an algorithm not known here (...)".
  auto ran = [](const CollectiveCall& c) {
    constexpr std::string_view not_known = "not known: ";
    return c.algorithm.starts_with(not_known)
               ? "an algorithm not known here (" + c.algorithm.substr(not_known.size()) + ")"
               : algorithm_text(c);
  };
  report.lines.push_back("  note: the recording's Open MPI ran " + ran(*recorded) +
                         "; this replay's, with the settings it runs with (the recorded MCA settings are not "
                         "given here), runs " +
                         ran(now) +
                         " for the first allreduce, and every allreduce result compared the same bits");
}

std::string cannot_emulate(const trace::RunSet& run, const ForceSet& force) {
  const int n = run.world_size;
  const CollectiveSettings settings = recorded_settings(run.headers[0]);
  const std::optional<CollectiveCall> first_call = first_collective(run);
  if (!first_call || first_call->variant != kAllreduceMpi || !force.kernels) return "";
  CollectiveCall probe;
  const MpiAlgorithm a = describe_mpi_algorithm(settings, n, first_call->count * 4, probe);
  const MpiAlgorithm e = ompi414_effective(a, n, first_call->count, settings.segment_bytes);
  std::vector<float> x(4, 1.0f), y(4);
  std::vector<std::span<const float>> parts(n, std::span<const float>(x));
  if (ompi414_emulate(e, parts, y)) return "";
  const std::string why = settings.table_not_used();
  // The recorded MCA settings that chose the algorithm, as variables of the mpirun command.
  std::string mca;
  if (settings.forced())
    mca += "OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_allreduce_algorithm=" +
           std::to_string(settings.forced_algorithm) + " ";
  if (settings.forced() && settings.segment_bytes != 0)
    mca +=
        "OMPI_MCA_coll_tuned_allreduce_algorithm_segmentsize=" + std::to_string(settings.segment_bytes) + " ";
  if (!settings.components.empty()) mca += "OMPI_MCA_coll=" + settings.components + " ";
  if (!settings.forced() && settings.dynamic_rules && !settings.rules_file.empty())
    mca += "OMPI_MCA_coll_tuned_use_dynamic_rules=1 OMPI_MCA_coll_tuned_dynamic_rules_filename=" +
           settings.rules_file + " ";
  // The priorities as the recording's environment set them (a file of MCA parameters, read again by a replay
  // on that machine, sets the others).
  if (why.find("_priority") != std::string::npos)
    for (const auto& [key, value] : run.headers[0].environment)
      if (key.starts_with("env.OMPI_MCA_coll_") && key.ends_with("_priority"))
        mca += key.substr(4) + "=" + value + " ";
  return run.folder + ": the run's allreduce__mpi ran " +
         (why.empty() ? "Open MPI's " + std::string(mpi_algorithm_name(static_cast<int>(e))) + " algorithm"
                      : std::string("an algorithm not known here (" + why + ")")) +
         " over " + std::to_string(n) + " ranks (" +
         (settings.library.empty() ? "library not recorded" : settings.library) +
         "), which a replay on fewer processes than ranks cannot emulate: replay it under mpirun -n " +
         std::to_string(n) + " with the recorded settings (" + mca + "mpirun -n " + std::to_string(n) +
         " trainrr replay " + run.folder + ")";
}

std::vector<std::string> replay_hosted_ranks(const trace::RunSet& run, const ForceSet& force,
                                             const std::vector<std::string>& overrides, int64_t to_step,
                                             LocalGroup& group, int first, int local,
                                             std::function<bool(int rank, const std::string& unit)> filter,
                                             std::vector<std::set<std::string>>* raced) {
  const CollectiveSettings settings = recorded_settings(run.headers[0]);
  std::vector<std::string> packed(local);
  auto pack = [](const RankReplay& x) {
    return std::to_string(x.exit_code) + "|" + std::to_string(x.step) + "|" + std::to_string(x.priority) + "|" + x.text;
  };
  // A damaged run's report says damaged, and the command exits 2.
  const RunExtent extent = run_extent(run);
  to_step = replay_stop(extent, to_step);
  // "rank 3: run.trr/rank3.trr: ...": an error names the rank it is about, whichever rank reports it.
  auto about = [&](int r, const std::string& what) {
    return "rank " + std::to_string(r) + ": " + run.paths[r] + ": " + what;
  };
  // A folder per rank: each rank writes the data its trace embeds under the same names.
  std::vector<ScratchDir> scratches;
  scratches.reserve(local);
  std::vector<RunConfig> configs;
  for (int i = 0; i < local; ++i) {
    auto scratch = ScratchDir::create("trainrr-rank" + std::to_string(first + i));
    if (!scratch) {
      for (auto& p : packed) p = pack({2, -1, 0, scratch.error().message});
      return packed;
    }
    scratches.push_back(std::move(scratch).value());
    auto rebuilt = rebuild_config(run.headers[first + i], overrides, "", false, scratches.back());
    if (!rebuilt) {
      for (auto& p : packed) p = pack({2, -1, 0, about(first + i, for_a_run(rebuilt.error().message))});
      return packed;
    }
    configs.push_back(rebuilt->config);
  }
  // The ranks replayed here share this process: together they start no more threads than one run may.
  int64_t threads_here = 0;
  for (const RunConfig& c : configs)
    threads_here +=
        c.runtime.threads > 0 ? c.runtime.threads : std::max(1u, std::thread::hardware_concurrency());
  if (local > 1 && threads_here > kMaxThreads) {
    for (auto& p : packed)
      p = pack(
          {2, -1, 0,
           run.paths[first] + ": the " + std::to_string(local) +
               " ranks replayed in this process would run " + std::to_string(threads_here) +
               " threads together (runtime.threads of each), more than the " + std::to_string(kMaxThreads) +
               " one process may: replay the run under mpirun, where each process replays its own ranks"});
    return packed;
  }
  KernelRegistry registry;
  register_cpu_kernels(registry);
  std::vector<std::optional<ReplaySide>> sides(local);
  std::vector<std::string> errors(local);
  std::vector<bool> cannot(local, false);
  std::vector<char> trace_firsts(local, 0);  // each thread writes its own
  std::vector<std::thread> threads;
  // A rank whose thread the OS refuses to start (std::system_error) stops the group: the ranks started wait
  // for it at their first allreduce otherwise.
  std::string not_started;
  for (int i = 0; i < local && not_started.empty(); ++i) {
    try {
      threads.emplace_back([&, i] {
        const int r = first + i;
        try {
          std::function<bool(const std::string&)> unit_filter;
          if (filter) unit_filter = [&filter, r](const std::string& u) { return filter(r, u); };
          auto side = make_replay_side(run.paths[r], configs[i], registry, force, unit_filter,
                                       run.headers[r].level, true, 0, &group.member(r));
          if (!side) {
            // This machine's memory: cannot replay here, as for one trace.
            cannot[i] = side.error().machine;
            errors[i] = (side.error().machine ? "cannot replay here: " : "") + side.error().message;
            group.abort("rank " + std::to_string(r) + " could not start");
            return;
          }
          sides[i].emplace(std::move(side).value());
          bool trace_first = false;
          Status st = fit_comparing_states(run.paths[r], *sides[i], to_step, to_footer(extent, to_step),
                                           extent.steps, trace_first);
          trace_firsts[i] = trace_first;
          if (!st) {
            errors[i] = st.error().message;
            group.abort("rank " + std::to_string(r) + " stopped");
          }
        } catch (const GroupAborted& e) {
          errors[i] = std::string("stopped with the group: ") + e.what();
        } catch (const CannotEmulate& e) {
          errors[i] = e.what();
          cannot[i] = true;
          group.abort(e.what());
        } catch (const std::exception& e) {
          errors[i] = e.what();
          group.abort("rank " + std::to_string(r) + ": " + e.what());
        }
      });
    } catch (const std::system_error& e) {
      not_started =
          about(first + i, std::string("cannot start a thread to replay it here (") + e.what() + ")");
      group.abort("rank " + std::to_string(first + i) + " could not start");
    }
  }
  for (auto& t : threads) t.join();
  if (!not_started.empty()) {
    for (auto& p : packed) p = pack({2, -1, 0, not_started});
    return packed;
  }
  if (raced) {
    raced->assign(local, {});
    for (int i = 0; i < local; ++i)
      if (sides[i]) (*raced)[i] = racy_in_replay(*sides[i]->hooks, registry);
  }
  // The rank whose own error stopped the group speaks for it: the lowest, where several failed on their own.
  for (int i = 0; i < local; ++i)
    if (!errors[i].empty() && errors[i].rfind("stopped with the group", 0) != 0) {
      for (int j = 0; j < local; ++j)
        packed[j] = pack({cannot[i] ? 3 : 2, -1, 0, about(first + i, errors[i])});
      break;
    }
  for (int i = 0; i < local; ++i) {
    if (!packed[i].empty()) continue;
    const bool cut = rank_is_cut(extent, first + i);
    packed[i] = errors[i].empty()
                    ? pack(analyze_rank(*sides[i]->hooks, first + i, run.headers[first + i], settings,
                                        rank_inputs(run.headers[first + i], configs[i], force, registry),
                                        to_step < 0 || cut, cut, !extent.damage.empty(),
                                        to_step < 0 && !sides[i]->hooks->at_end(), trace_firsts[i] != 0))
                    : pack({2, -1, 0, about(first + i, errors[i])});
  }
  return packed;
}

namespace {

Result<RunConfig> replayed_config(const trace::RunSet& run, const std::vector<std::string>& overrides,
                                  int rank = 0) {
  const trace::TraceHeader& h = run.headers[rank];
  std::vector<std::string> all = h.config_overrides;
  all.insert(all.end(), overrides.begin(), overrides.end());
  return parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), all);
}

// Each key and value as its length, ':' and its bytes: a value may hold any byte.
std::string pack_environment(const Environment& env) {
  std::string out;
  for (const auto& [k, v] : env)
    out += std::to_string(k.size()) + ":" + k + std::to_string(v.size()) + ":" + v;
  return out;
}

std::optional<Environment> unpack_environment(const std::string& packed) {
  Environment env;
  size_t at = 0;
  const auto field = [&](std::string& out) {
    const size_t colon = packed.find(':', at);
    if (colon == std::string::npos || colon == at || colon - at > 9) return false;
    size_t n = 0;
    for (size_t i = at; i < colon; ++i) {
      if (packed[i] < '0' || packed[i] > '9') return false;
      n = n * 10 + static_cast<size_t>(packed[i] - '0');
    }
    if (n > packed.size() - colon - 1) return false;
    out = packed.substr(colon + 1, n);
    at = colon + 1 + n;
    return true;
  };
  while (at < packed.size()) {
    std::pair<std::string, std::string> kv;
    if (!field(kv.first) || !field(kv.second)) return std::nullopt;
    env.push_back(std::move(kv));
  }
  return env;
}

}  // namespace

// The environment rank `rank` is replayed in here: this machine's, with that rank's own configuration (its
// threads and policy, which the rank's replay runs with).
std::optional<Environment> rank_environment(const trace::RunSet& run,
                                            const std::vector<std::string>& overrides, int rank) {
  auto config = replayed_config(run, overrides, rank);
  if (!config) return std::nullopt;
  auto now = current_environment(*config);
  if (!now) return std::nullopt;
  return std::move(now).value();
}

std::string packed_environment(const trace::RunSet& run, const std::vector<std::string>& overrides, int first,
                               int hosted) {
  std::string out;
  for (int r = first; r < first + hosted && r < run.world_size; ++r) {
    auto env = rank_environment(run, overrides, r);
    if (!env) return "";
    const std::string one = pack_environment(*env);
    out += std::to_string(one.size()) + ":" + one;
  }
  return out;
}

void add_run_inputs(const trace::RunSet& run, const ForceSet& force,
                    const std::vector<std::string>& overrides, RunReport& report, int hosted,
                    const std::vector<std::string>* process_environments) {
  const trace::TraceHeader& h = run.headers[0];
  auto config = replayed_config(run, overrides);
  if (!config) return;
  if (report.exit_code == 0) {
    // Asked for another run than the one recorded, and yet every compared value matched.
    // The seed is a forced draw's, the allreduce variant a forced kernel choice's.
    std::vector<std::string> served, other;
    for (const std::string& c : config_differences(h, *config))
      (((c.rfind("seed: ", 0) == 0 && force.rng) ||
        (c.rfind("distributed.allreduce: ", 0) == 0 && force.kernels))
           ? served
           : other)
          .push_back(c);
    std::vector<std::string> why;
    if (!served.empty())
      why.push_back("the forced choices (--force " + force.str() +
                    ") serve the recorded values in their place");
    for (std::string& w : unblamed_config_words(other)) why.push_back(std::move(w));
    if (!served.empty() || !other.empty()) {
      served.insert(served.end(), other.begin(), other.end());
      report.lines.push_back("  note: the configuration differs from the recording's (" + joined(served) +
                             "), yet every step compared matched it: " + joined(why));
    }
  }
  // What the process that replayed each rank ran it with against what that rank recorded (ranks may have run
  // on other machines or with other variables; MPI's settings are the run's own, reported with the
  // allreduce).
  // Each rank's environment where it was replayed, in rank order.
  std::vector<Environment> replayed_in;
  if (process_environments) {
    for (const std::string& packed : *process_environments) {
      // A process that could not tell: no rank is compared in part.
      if (packed.empty()) return;
      for (size_t at = 0; at < packed.size();) {
        const size_t colon = packed.find(':', at);
        if (colon == std::string::npos || colon == at || colon - at > 9) return;
        const size_t n = std::stoul(packed.substr(at, colon - at));
        if (n > packed.size() - colon - 1) return;
        auto env = unpack_environment(packed.substr(colon + 1, n));
        if (!env) return;
        replayed_in.push_back(std::move(*env));
        at = colon + 1 + n;
      }
    }
  } else {
    for (int r = 0; r < run.world_size; ++r) {
      auto env = rank_environment(run, overrides, r);
      if (!env) return;
      replayed_in.push_back(std::move(*env));
    }
  }
  (void)hosted;
  std::vector<int> ranks;
  std::vector<std::vector<EnvDifference>> per_rank;
  for (int r = 0; r < run.world_size && static_cast<size_t>(r) < replayed_in.size(); ++r) {
    ranks.push_back(r);
    per_rank.push_back(environment_differences(recorded_without_mpi(run.headers[r]), replayed_in[r]));
  }
  const auto lines = ranked_environment_lines(ranks, per_rank, "recorded", "replayed");
  if (lines.empty()) return;
  report.lines.push_back("environment differences:");
  report.lines.insert(report.lines.end(), lines.begin(), lines.end());
}

std::vector<std::string> ranked_environment_lines(const std::vector<int>& ranks,
                                                  const std::vector<std::vector<EnvDifference>>& per_rank,
                                                  const std::string& left, const std::string& right) {
  // Each difference, in the order first seen, with the ranks that have it.
  std::vector<std::pair<std::string, std::vector<int>>> seen;
  for (size_t i = 0; i < per_rank.size(); ++i)
    for (const EnvDifference& e : per_rank[i]) {
      const std::string line =
          e.key + ": " + e.recorded + " (" + left + ") vs " + e.replayed + " (" + right + ")";
      auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == line; });
      if (it == seen.end()) it = seen.insert(seen.end(), {line, {}});
      it->second.push_back(ranks[i]);
    }
  std::vector<std::string> out;
  for (const auto& [line, with] : seen) {
    if (with.size() == ranks.size()) {
      out.push_back("  " + line);
      continue;
    }
    std::string who = with.size() == 1 ? "rank " : "ranks ";
    for (size_t j = 0; j < with.size(); ++j) who += (j ? ", " : "") + std::to_string(with[j]);
    out.push_back("  " + who + ": " + line);
  }
  return out;
}

Status require_complete_steps(const trace::RunSet& run) {
  for (int r = 0; r < run.world_size; ++r)
    if (Status s = require_complete_step(run.paths[r]); !s)
      return Error{"rank " + std::to_string(r) + ": " + s.error().message};
  return {};
}

RunReport replay_run(const RunReplayOptions& o) {
  auto run = trace::open_run(o.folder);
  if (!run) return {2, run.error().message, {}};
  if (Status s = require_complete_steps(*run); !s) return {2, s.error().message, {}};
  const int n = run->world_size;
  if (std::string why = cannot_emulate(*run, o.force); !why.empty()) return {3, why, {}};
  LocalGroup group(n, recorded_settings(run->headers[0]));
  RunReport out = gathered_report(replay_hosted_ranks(*run, o.force, o.overrides, o.to_step, group, 0, n), n);
  const std::string how = std::to_string(n) + " rank" + (n == 1 ? "" : "s") + " replayed in one process (no mpirun)";
  if (!out.lines.empty()) {
    std::string& last = out.exit_code == 0 ? out.lines.front() : out.lines.back();
    const std::string mpi_how = counted(n, "rank") + " replayed under mpirun, each checking its own trace";
    if (size_t at = last.find(mpi_how); at != std::string::npos) last.replace(at, mpi_how.size(), how);
  }
  add_allreduce_line(*run, out);
  headline_stop(*run, out, o.to_step);
  add_run_inputs(*run, o.force, o.overrides, out, n);
  return out;
}

}  // namespace trainrr
