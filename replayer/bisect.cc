#include "replayer/bisect.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "engine/escape.h"
#include "engine/fingerprint.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/model.h"
#include "engine/random.h"
#include "engine/trainer.h"
#include "replayer/cause.h"
#include "replayer/diff.h"
#include "replayer/draw_consistency.h"
#include "replayer/replay_hooks.h"
#include "replayer/replayer.h"
#include "traces/trace_reader.h"

namespace trainrr {
namespace fs = std::filesystem;

// Whether a kernel choice makes its result by a race: a kernel whose result depends on timing (a first-ready
// loader, a completion-order sum), or one picked by timing (autotune).
bool decided_by_a_race(const KernelChoice& choice, const KernelRegistry& registry) {
  const Kernel* kernel = registry.find(choice.chosen);
  return choice.reason.starts_with("autotune") || (kernel && !kernel->info.deterministic);
}

// The units whose choice a free replay made by a race: a kernel whose result depends on timing (a first-ready
// loader, a completion-order sum), or one picked by timing.
std::set<std::string> racy_in_replay(const ReplayHooks& hooks, const KernelRegistry& registry) {
  std::set<std::string> out;
  for (const auto& [site, choice] : hooks.replayed_choices())
    if (decided_by_a_race(choice, registry)) out.insert(site == "data/loader" ? "loader" : "kernel:" + site);
  return out;
}

std::string force_kind_of(const std::string& unit) {
  if (unit == "seed" || unit.rfind("rng:", 0) == 0) return "rng";
  if (unit.rfind("kernel:", 0) == 0) return "kernels";
  return unit;  // split, shuffle, loader
}

namespace {

// Where the recording's OpenBLAS code runs on this CPU and nobody named another (OPENBLAS_CORETYPE): how to
// bisect with it, as replay does (it restarts with it); else "". OpenBLAS reads its code only as it loads,
// and bisect's trials run one process's.
std::string recorded_openblas_runs_here(const trace::TraceHeader& header, const std::string& trace_path) {
  if (std::getenv("OPENBLAS_CORETYPE")) return "";
  std::string recorded;
  for (const auto& [key, value] : header.environment)
    if (key == "lib.openblas") recorded = openblas_core_in(value);
  auto isa = runtime_isa();
  if (recorded.empty() || !isa || openblas_same_core(recorded, openblas_core()) ||
      !openblas_core_runs_on(recorded, cpu_flags(), *isa))
    return "";
  return "; the recording's " + recorded + " code runs on this CPU: `OPENBLAS_CORETYPE=" + recorded +
         " trainrr bisect " + trace_path + "` bisects with it (replay restarts with it by itself)";
}

BisectResult failed(int code, std::string message) {
  BisectResult r;
  r.exit_code = code;
  r.error = std::move(message);
  return r;
}

void say(FILE* log, const std::string& line) {
  if (log) {
    // On a terminal, first clear a progress line the stage may have left.
    // The line may quote the trace's names: escaped, so only this escape sequence reaches the terminal.
    std::fprintf(log, "%s%s\n", isatty(fileno(log)) ? "\r\033[K" : "", inline_text(line).c_str());
    std::fflush(log);
  }
}

// What a free replay's divergence is explained with: its hooks' evidence against the recording.
CauseInputs free_cause_inputs(const ReplayHooks& hooks, const trace::TraceHeader& header, const RunConfig& config,
                              const KernelRegistry& registry) {
  CauseInputs ci;
  ci.outputs_compared = header.level != ProbeLevel::step;
  ci.op_outputs_compared = header.level == ProbeLevel::op;
  ci.registry = &registry;
  ci.config_differences = config_differences(header, config);
  ci.layer_names = layer_names(config.layers);
  // The machine's differences from the recording's, as replay gives them: without them a numeric cause would
  // say that nothing recorded differs.
  if (auto env = current_environment(config))
    ci.environment = environment_differences(header.environment, *env);
  ci.kernel_differences = hooks.kernel_differences();
  ci.order_differences = hooks.order_differences();
  ci.kernel_picks = hooks.kernel_picks();
  ci.kernels = hooks.recorded_kernels();
  ci.seed_recorded = header.seed;
  ci.seed_replayed = hooks.replayed_seed();
  ci.seed_from_entropy = header.seed_from_entropy;
  ci.matched_draws = hooks.matched_draws();
  return ci;
}

struct Suspect {
  int64_t step = -1;
  std::string why;
};

// "step 7, setup, data/loader": where a divergence is, in a line.
std::string place(const FirstDivergence& d) {
  if (d.kind == "state")
    return (d.phase == "setup"        ? "the initial state, before step " + std::to_string(d.step)
            : d.phase == "checkpoint" ? "the checkpoint at step " + std::to_string(d.step + 1) +
                                            ", after step " + std::to_string(d.step)
                                      : "the final state, after step " + std::to_string(d.step)) +
           (d.site.empty() ? std::string() : ", " + d.site);
  std::string p = "step " + std::to_string(d.step);
  if (!d.phase.empty()) p += ", " + d.phase;
  if (!d.site.empty()) p += ", " + d.site;
  return p;
}

// Stage 1: what the trace says without running the model. Counts its steps in `steps`; `stop` says where it
// stops short, damaged or cut. `train_rows`: the rows the run trains on (nullopt where they are not known),
// which every recorded shuffle orders: a shuffle of another length is a suspect, and is not recomputed.
Suspect scan(const std::string& path, const trace::TraceHeader& header, const KernelRegistry& registry,
             std::optional<int64_t> train_rows, int64_t& steps, Status& status,
             std::optional<TraceStop>& stop) {
  Suspect s;
  auto note = [&](int64_t step, const std::string& why) {
    if (s.step < 0 || step < s.step) s = {step, why};
  };
  // A recorded kernel that cannot run here makes a free replay differ for certain: it comes before what may
  // differ (a race) in its step.
  bool certain = false;
  auto note_certain = [&](int64_t step, const std::string& why) {
    if (s.step < 0 || step < s.step || (step == s.step && !certain)) {
      s = {step, why};
      certain = true;
    }
  };
  const std::optional<Isa> isa_here = [] {
    auto isa = runtime_isa();
    return isa ? std::optional<Isa>(*isa) : std::nullopt;
  }();
  if (header.seed_from_entropy) note(0, "the run seed was drawn from the OS: a free replay draws another");
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader) {
    status = reader.error();
    return s;
  }
  DrawBook draws;
  std::string loader;
  int epoch = -1;
  std::set<int64_t> taken;
  int64_t last_step = -1;
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec) status = rec.error();
    if (!rec || !rec->has_value()) break;
    auto* st = std::get_if<trace::TraceStep>(&(*rec)->value);
    if (!st) continue;
    ++steps;
    last_step = st->index;
    if (s.step >= 0 && st->index > s.step) continue;  // keep counting, the earliest suspect is known
    for (const auto& e : st->events) {
      if (auto* r = std::get_if<trace::RngDrawEvent>(&e)) {
        for (const std::string& why : {draws.take(r->draw), key_not_of_its_seed(r->draw, header.seed)})
          if (!why.empty()) note(st->index, "draw at " + r->draw.site + ": " + why);
      } else if (auto* sh = std::get_if<trace::ShuffleEvent>(&e)) {
        if (train_rows && sh->length != static_cast<uint64_t>(*train_rows)) {
          note(st->index, "epoch " + std::to_string(int64_t{sh->epoch} + 1) + ": the recorded shuffle of " +
                              std::to_string(sh->length) + " rows " + std::string(kShuffleOfOtherRows) + " " +
                              std::to_string(*train_rows) + " training rows");
        } else if (const std::string why = train_rows ? order_not_of_its_draw(*sh) : std::string();
                   !why.empty()) {
          note(st->index, "epoch " + std::to_string(int64_t{sh->epoch} + 1) + ": " + why);
        }
        epoch = sh->epoch;
        taken.clear();
      } else if (auto* k = std::get_if<KernelChoice>(&e)) {
        if (k->site == "data/loader") loader = k->chosen;
        const Kernel* kk = registry.find(k->chosen);
        if (kk && !kk->info.deterministic)
          note(st->index, "nondeterministic kernel " + k->chosen + " at " + k->site);
        if (!kk) note_certain(st->index, "kernel " + k->chosen + " at " + k->site + " is not available here");
        if (kk && isa_here && kk->info.isa > *isa_here)
          note_certain(st->index, "kernel " + k->chosen + " at " + k->site + " needs " +
                                      isa_name(kk->info.isa) + ", which this process does not run (" +
                                      isa_name(*isa_here) + ")");
      } else if (auto* b = std::get_if<trace::BatchOrderEvent>(&e)) {
        if (loader == "loader__ordered") {
          int64_t expected = 0;
          while (taken.count(expected)) ++expected;
          if (b->batch != expected)
            note(st->index, "the ordered loader hands out batch " + std::to_string(expected) +
                                ", the recording has batch " + std::to_string(b->batch));
        }
        taken.insert(b->batch);
      }
    }
    if (st->epoch != epoch && epoch >= 0) taken.clear();
  }
  // A trace still being recorded ends where the recording had got to, which is no cut.
  const auto& stopped = (*reader)->stopped();
  const bool damaged = stopped && !stopped->truncated;
  if (damaged || (!(*reader)->ended_cleanly() && !(*reader)->still_recording())) {
    stop.emplace();
    stop->damaged = damaged;
    stop->trace = path;
    stop->after_step = last_step;
    if (stopped) stop->offset = stopped->offset;
    stop->detail = status.ok() ? "the file ends after a complete message, with no footer" : status.error().message;
  }
  return s;
}

// The choice units recorded in steps [from, to], and every kernel site (selected once, before `from`).
struct WindowUnits {
  std::vector<std::string> all;
  // Choices a free replay makes by a race: a first-ready loader's batch order, a completion-order kernel's
  // accumulation order, an autotuned selection. Left free, such a choice matches the recording only by
  // chance, so a trial that reproduces proves nothing about it.
  std::set<std::string> racy;
};

// `replay_racy`: the units a free replay here decides by a race though the recording did not (the replay's
// policy or thread count picked a first-ready loader or a completion-order sum there).
WindowUnits units_in_window(const std::string& path, int64_t from, int64_t to, const KernelRegistry& registry,
                            const std::set<std::string>& replay_racy = {}) {
  std::set<std::string> units = {"seed"};
  WindowUnits w;
  w.racy = replay_racy;
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader) {
    w.all.assign(units.begin(), units.end());
    return w;
  }
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec || !rec->has_value()) break;
    auto* st = std::get_if<trace::TraceStep>(&(*rec)->value);
    if (!st) continue;
    if (st->index > to) break;
    const bool inside = st->index >= from || st->index == 0;  // step 0 holds the run's setup choices
    for (const auto& e : st->events) {
      if (auto* k = std::get_if<KernelChoice>(&e)) {
        const std::string unit = k->site == "data/loader" ? "loader" : "kernel:" + k->site;
        if (unit != "loader") units.insert(unit);
        if (decided_by_a_race(*k, registry)) w.racy.insert(unit);
      }
      if (!inside) continue;
      if (auto* r = std::get_if<trace::RngDrawEvent>(&e)) units.insert("rng:" + r->draw.stream);
      if (std::holds_alternative<trace::SplitEvent>(e)) units.insert("split");
      if (std::holds_alternative<trace::ShuffleEvent>(e)) units.insert("shuffle");
      if (std::holds_alternative<trace::BatchOrderEvent>(e)) units.insert("loader");
    }
  }
  // Only what the window holds can be racy in it.
  std::erase_if(w.racy, [&](const std::string& u) { return !units.count(u); });
  w.all.assign(units.begin(), units.end());
  return w;
}

// What `replay --force` forces to serve back every unit of `units`: each one's kind, whole.
template <typename Units>
ForceSet force_set_of(const Units& units) {
  ForceSet f = ForceSet::none();
  for (const auto& u : units) add_force_kind(f, force_kind_of(u));
  return f;
}

}  // namespace

std::vector<std::string> smallest_forced_set(const std::vector<std::string>& all,
                                             const std::set<std::string>& racy,
                                             const std::function<bool(const std::vector<std::string>&)>& reproduces) {
  // ddmin narrows to a set from which no single unit can go (1-minimal).
  auto narrow = [&](std::vector<std::string> cur) {
    size_t n = 2;
    while (cur.size() >= 2) {
      const size_t chunk = (cur.size() + n - 1) / n;
      bool reduced = false;
      for (size_t i = 0; i < cur.size() && !reduced; i += chunk) {
        std::vector<std::string> part(cur.begin() + i, cur.begin() + std::min(cur.size(), i + chunk));
        std::vector<std::string> rest(cur.begin(), cur.begin() + i);
        rest.insert(rest.end(), cur.begin() + std::min(cur.size(), i + chunk), cur.end());
        if (reproduces(part)) {
          cur = part, n = 2, reduced = true;
        } else if (n > 2 && reproduces(rest)) {
          cur = rest, n = std::max<size_t>(n - 1, 2), reduced = true;
        }
      }
      if (!reduced) {
        if (n >= cur.size()) break;
        n = std::min(cur.size(), n * 2);
      }
    }
    return cur;
  };
  std::vector<std::string> cur = all;
  // First see whether the racy choices alone suffice.
  if (!racy.empty() && reproduces({})) cur.clear();
  cur = narrow(std::move(cur));
  if (cur.size() == 1 && !reproduces(cur)) cur = all;  // a single unit that alone does not suffice
  // A 1-minimal set is not always the smallest: the seed decides every stream's draws, the split and the
  // shuffle at once, so several of those units may give way to the seed alone (one replay says whether).
  auto by_seed = [](const std::string& u) {
    return u == "seed" || u.rfind("rng:", 0) == 0 || u == "split" || u == "shuffle";
  };
  if (std::find(all.begin(), all.end(), "seed") != all.end() &&
      std::count_if(cur.begin(), cur.end(), by_seed) >= 2) {
    std::vector<std::string> seeded = {"seed"};
    for (const std::string& u : cur)
      if (!by_seed(u)) seeded.push_back(u);
    if (reproduces(seeded)) {
      seeded = narrow(std::move(seeded));
      if (seeded.size() < cur.size()) cur = std::move(seeded);
    }
  }
  cur.insert(cur.end(), racy.begin(), racy.end());
  std::sort(cur.begin(), cur.end());
  return cur;
}

namespace {

// Thrown by a stage line when another file was put at a trace's path: what bisect read may mix two files.
struct TraceReplacedWhileRead {
  std::string why;
};

BisectResult bisect_stages(const BisectOptions& o) {
  BisectResult res;
  DivergenceReport& rep = res.report;
  rep.command = "bisect";
  // Each stage line goes on the page too: this `say` hides the one that prints it.
  auto say = [&rep, &o](FILE* log, const std::string& line) {
    if (o.replaced)
      if (std::string why = o.replaced(); !why.empty()) throw TraceReplacedWhileRead{why};
    rep.stages.push_back(line);
    trainrr::say(log, line);
  };
  // The recording it bisects (with another recording, the two are A and B).
  if (o.against.empty()) rep.facts.emplace_back("trace", o.trace_path);
  if (Status s = require_replayable_trace(o.trace_path, "bisect"); !s) return failed(2, s.error().message);
  trace::ReaderLimits header_only;  // the embedded data, for the run to train on
  header_only.tensor_values = false;
  auto reader = trace::TraceReader::open(o.trace_path, header_only);
  if (!reader) return failed(2, reader.error().message);
  const trace::TraceHeader header = (*reader)->header();
  reader->reset();
  auto scratch = ScratchDir::create("trainrr-bisect");
  if (!scratch) return failed(2, scratch.error().message);
  auto rebuilt =
      rebuild_config(header, o.overrides, o.data_path, false, *scratch,
                     "bisect narrows a divergence of the run with the data it recorded: pass --data with "
                     "that file (trainrr replay --data PATH --allow-data-change shows what the change "
                     "does)",
                     o.trace_path);
  if (!rebuilt) return failed(2, rebuilt.error().message);
  const RunConfig& config = rebuilt->config;
  if (Status s = device_for_replay(header, config); !s) return failed(3, s.error().message);
  KernelRegistry registry;
  register_cpu_kernels(registry);

  // Stage 1. With another recording, what is bisected is where the two recordings first differ, as diff
  // finds it; the report leads with that difference, and says beside it where a free replay here differs.
  Status scan_status;
  Suspect suspect;
  const bool against = !o.against.empty();
  if (against) {
    DiffResult d = diff_traces(o.trace_path, o.against);
    if (d.exit_code == 2) return failed(2, d.error);
    // Bisection forces this trace's choices into its own configuration: a trace of another run says
    // nothing about where this one goes astray.
    if (!d.config_differences.empty() || !d.data_difference.empty())
      return failed(2, "--against " + o.against + " is a recording of another run (" +
                           (d.config_differences.empty() ? d.data_difference : d.config_differences[0]) +
                           "): bisect needs two recordings of the same configuration and data; diff "
                           "compares different runs");
    for (const auto& [k, v] : d.report.facts)
      if (k == "steps compared") res.steps_recorded = std::stoll(v);
    res.damage = d.damage;
    rep = std::move(d.report);
    rep.command = "bisect";
    if (!rep.diverged) {
      say(o.log, "stage 1 (no execution): the two recordings are identical over " +
                     counted(res.steps_recorded, "step") + " compared: nothing to bisect");
      rep.notes.insert(rep.notes.begin(), rebuilt->notes.begin(), rebuilt->notes.end());
      res.exit_code = 0;
      return res;
    }
    suspect = {rep.first->step, "the two recordings first differ there, at " + place(*rep.first)};
  } else {
    // What --set changes from the recording: every key, as replay lists them (a cause names a few); and this
    // machine's environment against the recording's, as replay lists it, whatever bisect finds.
    rep.config_differences = config_differences(header, config);
    if (auto env = current_environment(config)) {
      rep.environment = environment_differences(header.environment, *env);
      rep.page.environment = side_by_side_table(header.environment, *env);
    }
    // The rows the run trains on, from its data and configuration: what a recorded shuffle's length is held
    // to before anything is made of it.
    // Synthetic data has the rows its configuration says, and is not generated for this.
    std::optional<int64_t> train_rows;
    if (config.data.source == "synthetic")
      train_rows = training_rows(config, config.data.samples);
    else if (auto data = load_dataset(config.data, header.seed, config.file))
      train_rows = training_rows(config, data->rows());
    suspect = scan(o.trace_path, header, registry, train_rows, res.steps_recorded, scan_status, rep.stop);
    if (rep.stop && rep.stop->damaged) res.damage = rep.stop->detail;
  }
  rep.notes.insert(rep.notes.begin(), rebuilt->notes.begin(), rebuilt->notes.end());
  if (!scan_status.ok()) rep.notes.push_back(scan_status.error().message);
  say(o.log,
      "stage 1 (no execution): read " + std::to_string(res.steps_recorded) + " recorded steps; " +
          (suspect.step >= 0 ? "first suspect step " + std::to_string(suspect.step) + ": " + suspect.why
                             : std::string("nothing suspicious recorded: the window starts at step 0")));

  // Stage 2: forced and free side by side from the checkpoint before the suspect step; with another
  // recording, through the step where the two differ.
  const int64_t from = std::max<int64_t>(0, suspect.step);
  const int64_t target = against ? suspect.step : -1;
  auto forced =
      make_replay_side(o.trace_path, config, registry, ForceSet::all(), {}, header.level, true, from);
  auto free_run =
      make_replay_side(o.trace_path, config, registry, ForceSet::none(), {}, header.level, true, from);
  for (const auto* side : {&forced, &free_run})
    if (!*side)
      return side->error().machine ? failed(3, "cannot replay here: " + side->error().message)
                                   : failed(2, side->error().message);
  const int64_t start = forced->resumed_at;
  Training& tf = *forced->training;
  Training& tr = *free_run->training;
  int64_t k = -1;
  const bool progress = o.log && isatty(fileno(o.log));
  const std::string a_name = against ? std::string("A") : std::string("the recording");
  // With every recorded choice forced the replay differs at `step` (or in the final state after it): nothing
  // to force explains that, and it is the report.
  auto forced_differs = [&](int64_t step) -> BisectResult {
    FirstDivergence d = *forced->hooks->first();
    auto env = current_environment(config);
    if (!env) return failed(2, env.error().message);
    CauseInputs ci;
    ci.outputs_compared = header.level != ProbeLevel::step;
    ci.op_outputs_compared = header.level == ProbeLevel::op;
    ci.registry = &registry;
    ci.environment = environment_differences(header.environment, *env);
    // A difference the forced choices serve the recorded value for (the seed, the split's keys) changes
    // nothing this replay computes: named in a note, never in the cause, as replay does.
    ci.config_differences = config_differences(header, config);
    const std::vector<std::string> served =
        take_served(ci.config_differences, forced->hooks->replayed_seed() == header.seed, true, &d);
    if (!served.empty())
      rep.notes.push_back("the configuration differs from the recording's (" +
                          first_of(served, served.size(), "; ") +
                          "), but the forced choices serve the recorded values in its place");
    ci.layer_names = layer_names(config.layers);
    ci.kernel_differences = forced->hooks->kernel_differences();  // kernels that cannot run here
    ci.kernels = forced->hooks->recorded_kernels();
    const std::string why = forced->hooks->substituted().empty()
                                ? "no choice to force can explain it"
                                : "the recorded kernels that cannot run here are what differs";
    substitution_notes(*forced->hooks, rep.notes);
    say(o.log, "stage 2: with every choice forced the replay diverges " +
                   (d.kind == "state" ? "in " + place(d) : "at step " + std::to_string(step)));
    res.exit_code = 1;
    if (against) {
      // The headline stays the difference between the two recordings; this machine cannot replay A.
      rep.facts.emplace_back("forced replay of A here",
                             "diverges from A at " + place(d) + " (" + classify(d, ci).category + ")");
      rep.notes.push_back("even with every recorded choice forced, A does not reproduce here: " + why +
                          "; nothing is narrowed");
      return res;
    }
    rep.diverged = true;
    rep.environment = ci.environment;
    // Where in the step it was born, as replay says it.
    std::optional<FirstDivergence> recorded_itself, op_first;
    if (d.kind == "probe" || d.kind == "step_end") {
      // In a folder of its own: the replays' copies of the embedded data files are still in use.
      auto recorded_scratch = ScratchDir::create("trainrr-bisect");
      Result<RebuiltRun> recorded = Error{recorded_scratch ? "" : recorded_scratch.error().message};
      if (recorded_scratch) recorded = rebuild_config(header, {}, o.data_path, true, *recorded_scratch);
      if (recorded)
        locate_element(o.trace_path, ForceSet::all(), recorded->config, config, registry, d.step, d,
                       res.steps_executed, rep.notes, nullptr, &recorded_itself, &op_first);
      else
        rep.notes.push_back("no element detail: the recorded run cannot be set up again here: " +
                            recorded.error().message);
    }
    rep.first = d;
    rep.cause = classify(*rep.first, ci);
    refine_cause(rep.cause, d, ci, recorded_itself, op_first, rep.notes);
    rep.page.timeline = replay_timeline(header, o.trace_path, d.step, forced->training->device() != nullptr);
    if (o.against.empty())
      rep.page.kernels =
          side_by_side_table(forced->hooks->recorded_kernels(), forced->hooks->replayed_kernels());
    const bool openblas = rep.cause.detail.find("OpenBLAS ran its") != std::string::npos;
    rep.notes.push_back(
        "even with every recorded choice forced the run does not reproduce here: " +
        (openblas && !forced->hooks->substituted().empty()
             ? std::string("the recorded kernels that cannot run here, or OpenBLAS running other "
                           "code than recorded, are what differs")
         : openblas ? std::string("OpenBLAS running other code than recorded is what differs")
                    : why) +
        (openblas ? recorded_openblas_runs_here(header, o.trace_path) : std::string()));
    return res;
  };
  // The final state, compared where a side replayed the whole recorded run and every step compared the same:
  // what the steps do not compare (a batch normalization's moving statistics at level step) is compared
  // there.
  auto final_difference = [&](ReplaySide& side) -> std::optional<FirstDivergence> {
    Training& t = *side.training;
    ReplayHooks& h = *side.hooks;
    if (h.diverged() || !h.at_end() || !h.trace_ended_cleanly() || h.trace_damage() || t.step() <= start)
      return std::nullopt;
    return final_state_difference(o.trace_path, side);
  };
  // From step 0, the state the forced side sets up is compared with the trace's initial checkpoint, as replay
  // compares it (a recorded draw the set-up did not make comes first).
  if (!against && start == 0 && !forced->hooks->diverged() && tf.step() == 0 && tf.total_steps() > 0) {
    if (auto d = initial_state_difference(o.trace_path, *forced)) {
      forced->hooks->diverge_at_end(std::move(*d));
      return forced_differs(0);
    }
  }
  while (tf.step() < tf.total_steps() && !forced->hooks->at_end() && (target < 0 || tf.step() <= target)) {
    const int64_t step = tf.step();
    if (progress && step % 100 == 0)
      std::fprintf(o.log, "\rstage 2: step %lld of %lld", static_cast<long long>(step),
                   static_cast<long long>(res.steps_recorded > 0 ? res.steps_recorded : tf.total_steps()));
    // A forced replay that differs in the draws of the initial weights differs before its first step, as
    // replay stops there: no step of a model that may be far larger than the recorded one is trained.
    const auto& early = forced->hooks->first();
    if (!(early && in_initial_weights(*early) && step == start)) {
      Status a = tf.fit(step + 1);
      Status b = tr.fit(step + 1);
      res.steps_executed += 2;
      for (const ReplaySide* side : {&*forced, &*free_run})
        if (const auto& refused = side->hooks->kernel_refusal())
          return failed(2, kernel_refusal_message(o.trace_path, *refused));
      if (!a) return failed(3, "cannot replay here: " + a.error().message);
      if (!b) return failed(3, "cannot replay here: " + b.error().message);
      // A checkpoint on the way is compared as replay compares it.
      if (!against)
        for (ReplaySide* side : {&*forced, &*free_run})
          if (!side->hooks->diverged())
            if (auto d = checkpoint_difference(o.trace_path, *side))
              side->hooks->diverge_at_end(std::move(*d));
    }
    if (forced->hooks->diverged()) return forced_differs(step);
    if (free_run->hooks->diverged()) {
      k = step;
      break;
    }
  }
  // Every step compared the same on both sides through the end of the recorded run: their final states are
  // compared with the recorded one.
  if (k < 0 && !against) {
    if (auto d = final_difference(*forced)) {
      forced->hooks->diverge_at_end(std::move(*d));
      return forced_differs(tf.step() - 1);
    }
    if (auto d = final_difference(*free_run)) {
      free_run->hooks->diverge_at_end(std::move(*d));
      k = tr.step() - 1;
    }
  }
  // The recorded kernels that cannot run here, which the forced replay ran another in place of, as replay
  // notes.
  if (o.against.empty()) substitution_notes(*forced->hooks, rep.notes);
  // The page's kernel choices: the recording's and the free replay's, side by side.
  if (o.against.empty())
    rep.page.kernels =
        side_by_side_table(free_run->hooks->recorded_kernels(), free_run->hooks->replayed_kernels());
  // Left free, these match the recording only by chance: a trial that reproduces proves nothing about them.
  const std::set<std::string> replay_racy = racy_in_replay(*free_run->hooks, registry);
  // What a free replay here says beside the difference between the two recordings: the same difference
  // again, one of its own first, or none.
  std::string free_says;
  if (against) {
    const FirstDivergence& ab = *rep.first;
    if (k < 0) {
      free_says = "reproduces A through step " + std::to_string(target) +
                  ": the difference between A and B does not recur here";
    } else {
      const FirstDivergence& fd = *free_run->hooks->first();
      const CauseInputs ci = free_cause_inputs(*free_run->hooks, header, config, registry);
      // The cause in words; a probe's divergence carries none of its own, its cause says what differs.
      const Cause c = classify(fd, ci);
      const std::string why = !c.detail.empty() ? c.detail : fd.detail;
      free_says = fd.step == ab.step && fd.site == ab.site
                      ? "diverges from A at the same step and site as B does"
                      : "diverges from A first at " + place(fd) + " (" + c.category +
                            (why.empty() ? std::string() : ": " + why) + "), a difference of its own " +
                            (fd.step < ab.step ? "before" : "where") + " A and B differ";
      k = target;  // the window runs to the difference between the recordings
    }
    rep.facts.emplace_back("free replay here", free_says);
  }
  if (k < 0) {
    say(o.log, "stage 2: replayed steps " + std::to_string(start) + ".." + std::to_string(tf.step() - 1) +
                   " forced and free side by side: " +
                   (against ? "the free replay " + free_says : std::string("the free replay reproduces bit for bit")));
    {
      // A choice decided by a race that the free replay matched, it matched by chance: another free replay
      // may differ there.
      const WindowUnits whole = units_in_window(o.trace_path, start, tf.step() - 1, registry, replay_racy);
      std::string racy;
      for (const auto& u : whole.racy) racy += (racy.empty() ? "" : ", ") + u;
      if (!racy.empty()) {
        ReplayOptions command;
        command.trace_path = o.trace_path;
        command.force = force_set_of(whole.racy);
        command.overrides = o.overrides;
        command.data_path = o.data_path;
        command.from_step = start;
        rep.notes.push_back(
            "the recording or this free replay decides choices by a race (" + racy +
            "): this free replay matched the recording there by chance, and another may not; `" +
            replay_command_line(command) + "` serves them back");
      }
    }
    // A --set that changes nothing the steps compared, or how many steps run: the run asked for is not the
    // one recorded, as replay says.
    if (!against && !rep.config_differences.empty()) {
      const Unmatched unmatched = tf.step() < tf.total_steps() ? Unmatched::trace_first
                                  : !forced->hooks->at_end()   ? Unmatched::replay_run_end
                                                               : Unmatched::none;
      rep.notes.push_back(config_matched_note(rep.config_differences, {}, rep.config_differences,
                                              free_run->hooks->steps_compared(), tf.step(), unmatched));
      rep.facts.emplace_back("steps compared", std::to_string(free_run->hooks->steps_compared()));
    }
    rep.facts.emplace_back("steps re-executed", std::to_string(res.steps_executed));
    rep.facts.emplace_back("steps recorded", std::to_string(res.steps_recorded));
    // With another recording, the two recordings still differ: nothing here needs forcing to reproduce A.
    res.exit_code = against ? 1 : 0;
    return res;
  }
  say(o.log, "stage 2: lockstep replay from " +
                 (start > 0 ? "the checkpoint at step " + std::to_string(start) : std::string("step 0")) +
                 ": forced reproduces, free " +
                 (against ? free_says
                  : free_run->hooks->first() && free_run->hooks->first()->kind == "state"
                      ? "diverges in " + place(*free_run->hooks->first())
                      : "diverges at step " + std::to_string(k)) +
                 " (" + std::to_string(res.steps_executed) + " steps executed)");

  // Stage 3: delta debugging over the window's choices. Racy choices are always forced: a trial that leaves
  // one free and reproduces may have been lucky, and ddmin would then drop a choice that is needed.
  // A replay from `start` with the kinds `kinds` forced, narrowed to the units `units` names when given (without
  // them every choice of those kinds, as `replay --force` does), through step `to` (-1: the end of the trace).
  struct Outcome {
    bool ran = false;            // false: it could not be set up, or a step could not run
    std::optional<FirstDivergence> first;  // where it differed
    int64_t last = -1;           // the last step it replayed without a difference
  };
  auto replay_through = [&](ForceSet kinds, std::optional<std::set<std::string>> units, int64_t to) {
    Outcome out;
    std::function<bool(const std::string&)> filter;
    if (units) filter = [set = *units](const std::string& u) { return set.count(u) > 0; };
    auto side = make_replay_side(o.trace_path, config, registry, kinds, filter, header.level, true, start);
    if (!side) return out;
    Training& t = *side->training;
    out.last = t.step() - 1;
    while (t.step() < t.total_steps() && !side->hooks->at_end() && (to < 0 || t.step() <= to)) {
      if (!t.fit(t.step() + 1)) return out;
      ++res.steps_executed;
      // A checkpoint on the way is compared as replay compares it.
      if (!side->hooks->diverged())
        if (auto d = checkpoint_difference(o.trace_path, *side)) side->hooks->diverge_at_end(std::move(*d));
      if (side->hooks->diverged()) {
        out.first = side->hooks->first();
        out.ran = true;
        return out;
      }
      out.last = t.step() - 1;
    }
    if (auto d = final_difference(*side)) out.first = std::move(*d);
    out.ran = true;
    return out;
  };
  int64_t through = k;  // the trials replay through this step
  WindowUnits window;
  std::vector<std::string> all;
  auto reproduces = [&](const std::vector<std::string>& units) -> bool {
    std::set<std::string> set(units.begin(), units.end());
    set.insert(window.racy.begin(), window.racy.end());
    ++res.replays;
    const Outcome out = replay_through(ForceSet::all(), set, through);
    return out.ran && !out.first;
  };
  // How far the smallest set was shown to reproduce, and why no further when it stops short of the recording.
  int64_t checked = k;
  std::optional<FirstDivergence> forced_stop;  // every recorded choice forced differs there
  std::optional<FirstDivergence> unrepeated;   // the set differs again inside the window it reproduced
  for (;;) {
    window = units_in_window(o.trace_path, start, through, registry, replay_racy);
    all.clear();
    for (const auto& u : window.all)
      if (!window.racy.count(u)) all.push_back(u);
    const int64_t replays_before = res.replays;
    res.minimal = smallest_forced_set(all, window.racy, reproduces);
    std::string racy;
    for (const auto& u : window.racy) racy += (racy.empty() ? "" : ", ") + u;
    // One count of choices throughout: the window's recorded choices, of which the racy ones are always
    // forced and the rest are searched.
    const int64_t replays = res.replays - replays_before;
    say(o.log, "stage 3: " + std::to_string(window.all.size()) + " recorded choices in steps " +
                   std::to_string(start) + ".." + std::to_string(through) + ": delta debugging over " +
                   std::to_string(all.size()) + " of them, " + std::to_string(replays) +
                   (replays == 1 ? " replay" : " replays") +
                   (racy.empty() ? std::string()
                                 : "; the other " + std::to_string(window.all.size() - all.size()) +
                                       " always forced, as a free replay matches them only by chance: " + racy));
    if (against) break;  // A is reproduced through the step where the recordings differ, and no further
    // The set was found on the steps up to the free replay's divergence; the run goes on after it, where other
    // choices may matter. Replay the rest of the recording with the set forced.
    const std::set<std::string> set(res.minimal.begin(), res.minimal.end());
    const Outcome v = replay_through(ForceSet::all(), set, -1);
    if (!v.ran) return failed(3, "cannot replay here: a replay with the smallest set forced stopped at step " +
                                     std::to_string(v.last + 1));
    checked = v.last;
    if (!v.first) break;
    const int64_t j = v.first->step;
    if (j <= through) {  // it reproduced through `through` in delta debugging: this replay does not repeat itself
      unrepeated = v.first;
      break;
    }
    // Is there anything left to force? The forced side of stage 2 goes on to that step.
    while (tf.step() <= j && tf.step() < tf.total_steps() && !forced->hooks->at_end()) {
      if (!tf.fit(tf.step() + 1)) return failed(3, "cannot replay here: the forced replay stopped at step " +
                                                      std::to_string(tf.step()));
      ++res.steps_executed;
      if (!forced->hooks->diverged())
        if (auto d = checkpoint_difference(o.trace_path, *forced))
          forced->hooks->diverge_at_end(std::move(*d));
      if (forced->hooks->diverged()) break;
    }
    // The set differs in the final state: every recorded choice forced is compared there too.
    if (v.first->kind == "state" && !forced->hooks->diverged())
      if (auto d = final_difference(*forced)) forced->hooks->diverge_at_end(std::move(*d));
    if (forced->hooks->diverged()) {
      forced_stop = forced->hooks->first();
      break;
    }
    say(o.log, "stage 3: forced, these " + std::to_string(res.minimal.size()) + " choices reproduce through step " +
                   std::to_string(j - 1) + " and differ at " + place(*v.first) +
                   ", where every recorded choice forced reproduces: the window grows to steps " +
                   std::to_string(start) + ".." + std::to_string(j));
    through = j;
  }
  const std::vector<std::string>& cur = res.minimal;
  std::string units;
  for (const auto& u : cur) units += (units.empty() ? "" : ", ") + u;
  std::string racy;
  for (const auto& u : window.racy) racy += (racy.empty() ? "" : ", ") + u;
  const int64_t last_recorded = res.steps_recorded - 1;
  // The command that replays what was checked, under the settings bisect ran with: `replay --force` forces
  // every choice of a kind, more than the set names, so it is replayed too before it is offered.
  ReplayOptions command;
  command.trace_path = o.trace_path;
  command.force = force_set_of(cur);
  command.overrides = o.overrides;
  command.data_path = o.data_path;
  command.from_step = start;
  if (checked < last_recorded) command.to_step = checked + 1;
  // Replayed again with the set forced, the run may differ in its very first step: no step reproduced, and no
  // replay command can be offered for none.
  const bool none_reproduced = checked < start;
  const std::string command_line = none_reproduced ? std::string() : replay_command_line(command);
  std::string offered;
  if (none_reproduced) {
    offered = "no replay command is offered for no step";
  } else {
    const Outcome by_kind = replay_through(command.force, std::nullopt, checked);
    offered = "`" + with_environment(command_line, rep.environment) + "`";
    if (!by_kind.ran || by_kind.first)
      offered += by_kind.first ? " forces every choice of those kinds and differs at " + place(*by_kind.first)
                               : " forces every choice of those kinds and could not be replayed here";
    else
      offered += " does";
  }
  const std::string span = start > 0 ? "from the checkpoint at step " + std::to_string(start) + " through step " +
                                           std::to_string(checked)
                                     : "through step " + std::to_string(checked);
  std::string reach;
  if (against) {
    reach = "A through step " + std::to_string(k) + ", where A and B differ";
  } else if (unrepeated) {
    reach = "bit for bit through step " + std::to_string(through) +
            " in delta debugging, but replayed again with them forced the run differs at " + place(*unrepeated) +
            " (the replay does not repeat itself here)";
  } else if (forced_stop) {
    reach = "bit for bit " + span + "; with every recorded choice forced the run differs at " + place(*forced_stop) +
            ", so no choice to force reproduces further";
  } else {
    reach = "bit for bit " + span +
            (checked == last_recorded          ? ", the last recorded"
             : checked == tf.total_steps() - 1 ? ", the last that this replay's configuration runs"
                                               : "");
  }
  say(o.log, "result: force " + units + " (" + std::to_string(cur.size()) + " of " +
                 std::to_string(window.all.size()) + " choices) to reproduce " + reach + "; " + offered);

  if (!against) {
    rep.diverged = true;
    rep.first = free_run->hooks->first();
    CauseInputs ci = free_cause_inputs(*free_run->hooks, header, config, registry);
    rep.cause = classify(*rep.first, ci);
    rep.page.timeline =
        replay_timeline(header, o.trace_path, rep.first->step, free_run->training->device() != nullptr);
  }
  // A --set that the cause does not name is reported, as replay reports it.
  if (!against && !rep.config_differences.empty() && rep.cause.category != "config") {
    std::string keys;
    for (const auto& c : rep.config_differences) keys += (keys.empty() ? "" : "; ") + c;
    const bool length_only = std::all_of(rep.config_differences.begin(), rep.config_differences.end(),
                                         [](const std::string& c) { return changes_only_length(c); });
    rep.notes.push_back("the configuration differs from the recording's too (" + keys +
                        "), and no choice to force " + "undoes that: " +
                        (length_only
                             ? unblamed_config_words(rep.config_differences)[0]
                             : std::string("the runs compared are runs of different configurations")));
  }
  // When the racy choices alone reproduce, nothing was narrowed: the search found no other choice to force.
  const bool racy_alone =
      !window.racy.empty() &&
      std::all_of(cur.begin(), cur.end(), [&](const std::string& u) { return window.racy.count(u) > 0; });
  rep.facts.emplace_back("minimal forced choices", units);
  if (racy_alone)
    rep.notes.push_back(
        "no recorded choice but the racy ones needs forcing; bisect forces those always, without trying "
        "whether each is needed (left free, one matches the recording only by chance)");
  if (!racy.empty()) rep.facts.emplace_back("racy choices, always forced", racy);
  const std::string prefix = "trainrr replay " + shell_word(o.trace_path) + " ";
  if (!none_reproduced) {
    rep.facts.emplace_back("replay with", command_line.substr(prefix.size()));
    rep.page.command = with_environment(command_line, rep.environment);
  }
  rep.facts.emplace_back("divergent step", std::to_string(k));
  rep.facts.emplace_back("window", std::to_string(start) + ".." + std::to_string(through));
  rep.facts.emplace_back("reproduces through step", none_reproduced ? "none" : std::to_string(checked));
  if (forced_stop) {
    auto env = current_environment(config);
    CauseInputs ci;
    ci.outputs_compared = header.level != ProbeLevel::step;
    ci.op_outputs_compared = header.level == ProbeLevel::op;
    ci.registry = &registry;
    if (env) ci.environment = environment_differences(header.environment, *env);
    ci.config_differences = config_differences(header, config);
    take_served(ci.config_differences, forced->hooks->replayed_seed() == header.seed, true, &*forced_stop);
    ci.layer_names = layer_names(config.layers);
    ci.kernel_differences = forced->hooks->kernel_differences();
    ci.kernels = forced->hooks->recorded_kernels();
    const Cause c = classify(*forced_stop, ci);
    rep.facts.emplace_back("with every choice forced",
                           "diverges at " + place(*forced_stop) + " (" + c.category +
                               (c.detail.empty() ? std::string() : ": " + c.detail) + ")");
  }
  rep.facts.emplace_back("delta-debugging replays", std::to_string(res.replays));
  rep.facts.emplace_back("steps re-executed", std::to_string(res.steps_executed));
  rep.facts.emplace_back("steps recorded", std::to_string(res.steps_recorded));
  res.exit_code = 1;
  return res;
}

}  // namespace

BisectResult bisect(const BisectOptions& o) {
  try {
    return bisect_stages(o);
  } catch (const TraceReplacedWhileRead& e) {
    return failed(2, e.why);
  }
}

}  // namespace trainrr
