#include "replayer/diff.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "engine/kernels/kernel_registry.h"
#include "engine/model.h"
#include "recorder/recorder.h"
#include "replayer/cause.h"
#include "replayer/data_difference.h"
#include "replayer/draw_consistency.h"
#include "replayer/event_keys.h"
#include "replayer/final_state.h"
#include "replayer/replay_hooks.h"
#include "replayer/replayer.h"
#include "replayer/scratch.h"
#include "traces/trace_reader.h"

namespace trainrr {
namespace {

// Kernel selections and accumulation orders explain outcomes; one present on one side only (another
// version selects at other sites, say) is not itself a divergence.
bool is_evidence(const std::string& key) { return key.rfind("kernel|", 0) == 0 || key.rfind("order|", 0) == 0; }

// Compares two aligned events of the same key; fills `d` and returns true when they differ.
bool differ(const trace::Event& a, const trace::Event& b, FirstDivergence& d) {
  if (auto* ra = std::get_if<trace::RngDrawEvent>(&a)) {
    const auto& rb = std::get<trace::RngDrawEvent>(b);
    const bool same_draw =
        ra->draw.key == rb.draw.key && ra->draw.counter == rb.draw.counter && ra->draw.count == rb.draw.count;
    if (ra->digest == rb.digest && same_draw) return false;
    d.kind = "rng";
    d.same_count = ra->draw.count == rb.draw.count;
    d.site = ra->draw.site;
    d.phase = event_phase(d.kind, d.site);
    if (same_draw) {
      // Only the values differ: the digests are what tell the two apart.
      d.same_draw = true;
      d.detail = "draw at " + d.site + ": " + draw_str(ra->draw) +
                 " on both sides (the same draw, made into other values: digest " + digest_str(ra->digest) +
                 " (A) vs " + digest_str(rb.digest) + " (B))";
    } else {
      d.detail = "draw at " + d.site + ": " + draw_str(ra->draw) + " (A), " + draw_str(rb.draw) + " (B)" +
                 (ra->digest == rb.digest ? " (the same values, from another draw)" : "");
    }
    return true;
  }
  if (auto* sa = std::get_if<trace::SplitEvent>(&a)) {
    const auto& sb = std::get<trace::SplitEvent>(b);
    if (sa->train == sb.train && sa->test == sb.test) return false;
    d.kind = "split";
    d.phase = "setup";
    d.site = sa->site;
    d.detail = "the train/test rows differ (" + std::to_string(sa->train.size()) + "/" +
               std::to_string(sa->test.size()) + " vs " + std::to_string(sb.train.size()) + "/" +
               std::to_string(sb.test.size()) + ")";
    // Where the lists first differ: as many rows on both sides say nothing else.
    for (const auto& [list, list_b, what] :
         {std::tuple{&sa->train, &sb.train, "training"}, std::tuple{&sa->test, &sb.test, "test"}}) {
      const auto at = std::mismatch(list->begin(), list->end(), list_b->begin(), list_b->end());
      if (at.first != list->end() && at.second != list_b->end()) {
        d.detail += "; " + std::string(what) + " position " + std::to_string(at.first - list->begin()) +
                    " holds row " + std::to_string(*at.first) + " (A), row " + std::to_string(*at.second) +
                    " (B)";
        break;
      }
    }
    return true;
  }
  if (auto* sa = std::get_if<trace::ShuffleEvent>(&a)) {
    const auto& sb = std::get<trace::ShuffleEvent>(b);
    // Orders of different numbers of rows differ, whatever their digests say: with the same data and
    // configuration, one of them is no order of the run's training rows.
    const bool same_rows = sa->length == sb.length;
    if (sa->digest == sb.digest && same_rows) return false;
    d.kind = "shuffle";
    d.phase = "input";
    d.site = sa->site;
    if (!same_rows) {
      d.detail = "epoch " + std::to_string(int64_t{sa->epoch} + 1) + ": the recorded shuffles order " +
                 std::to_string(sa->length) + " rows (A) and " + std::to_string(sb.length) +
                 " rows (B): one of them " + std::string(kShuffleOfOtherRows) + " training rows";
      return true;
    }
    d.detail = "epoch " + std::to_string(int64_t{sa->epoch} + 1) + ": the order of the rows differs";
    if (sa->draw && sb.draw) d.detail += " (" + draw_str(*sa->draw) + " vs " + draw_str(*sb.draw) + ")";
    return true;
  }
  if (auto* ba = std::get_if<trace::BatchOrderEvent>(&a)) {
    const auto& bb = std::get<trace::BatchOrderEvent>(b);
    if (ba->batch == bb.batch) return false;
    d.kind = "loader";
    d.phase = "input";
    d.site = "data/loader";
    d.detail = "batch " + std::to_string(ba->batch) + " (A), batch " + std::to_string(bb.batch) + " (B)";
    return true;
  }
  // A selection or an accumulation order is evidence, not an outcome.
  if (std::holds_alternative<KernelChoice>(a) || std::holds_alternative<trace::AccumulationOrderEvent>(a)) return false;
  const auto& pa = std::get<trace::ProbeEvent>(a);
  const auto& pb = std::get<trace::ProbeEvent>(b);
  if (pa.fingerprint.digest == pb.fingerprint.digest) {
    // The same values summarized otherwise: one trace was changed after it was written (a summary is
    // computed in one order on every machine and build).
    const std::string differs =
        summary_fields_differ(pa.fingerprint.summary, pb.fingerprint.summary, "A", "B");
    if (differs.empty()) return false;
    d.kind = "summary";
    d.phase = phase_name(pa.phase);
    d.site = pa.site;
    d.detail = "A and B hold the same digest of " + pa.site + " with other summaries: " + differs;
    return true;
  }
  d.kind = "probe";
  d.phase = phase_name(pa.phase);
  d.site = pa.site;
  d.summary_recorded = pa.fingerprint.summary;
  d.summary_replayed = pb.fingerprint.summary;
  return true;
}

// The kernel sequences of two traces, compared step by step. A kernel sequence says which kernels ran, which
// cuDNN and cuBLASLt choose out of sight: it explains an outcome, and two runs can compute the same bits with other
// kernels, so a difference is a note, never a divergence.
struct KernelSequences {
  int64_t compared = 0;  // steps both sides hold kernel records for
  int64_t differing = 0;
  std::optional<std::string> first;  // the first difference, in words

  void compare(int64_t step, const trace::StepKernels& a, const trace::StepKernels& b) {
    ++compared;
    if (a.count == b.count && a.digest == b.digest) return;
    ++differing;
    if (first) return;
    // A side at level step keeps counts and the digest only: the step is named, not the op.
    if ((a.launches.empty() && a.count) || (b.launches.empty() && b.count)) {
      first = "step " + std::to_string(step) + " ran other GPU kernels (" + std::to_string(a.count) + " in A, " +
              std::to_string(b.count) + " in B; the digests of their sequences differ); a trace at level step keeps "
              "no kernels per op";
      return;
    }
    // Each op's launches in launch order; the ops in the order A launched them, then those only B launched.
    if (const std::optional<KernelDifference> d = first_kernel_difference(a, b, "", true)) {
      auto side = [&d](const trace::KernelLaunch* k, size_t in_op, const char* who) {
        return k ? std::string(who) + " ran " + launch_str(*k, false)
                 : std::string(who) + " ran no kernel " + std::to_string(d->index + 1) + " there (" +
                       std::to_string(in_op) + " in all)";
      };
      first = "step " + std::to_string(step) + ", op " + d->op + ", its kernel " + std::to_string(d->index + 1) +
              ": " + side(d->recorded_launch, d->recorded_in_op, "A") + "; " +
              side(d->replayed_launch, d->replayed_in_op, "B");
      return;
    }
    // Every op ran the same kernels, in another order across ops.
    first = "step " + std::to_string(step) + ": every op ran the same kernels, but the ops' kernels interleaved in "
            "another order";
  }
};

// Reads the steps of one trace in order, keeping epoch logs on the way, each with the last step before it.
struct StepStream {
  std::unique_ptr<trace::TraceReader> reader;
  std::vector<trace::TraceEpoch> epochs;
  Status status;
  std::vector<int64_t> epoch_after_step;  // epochs[k] was logged after step epoch_after_step[k]
  int64_t last_step = -1;
  uint64_t last_step_offset = 0;
  // Whether step `step`'s record is one no later message of the trace vouched for (the last of a trace cut
  // short).
  bool unvouched(int64_t step) const {
    const auto at = reader->unvouched();
    return at && step == last_step && *at == last_step_offset;
  }
  std::optional<trace::TraceStep> next() {
    for (;;) {
      auto r = reader->next();
      if (!r) {
        if (status.ok()) status = r.error();
        return std::nullopt;
      }
      if (!r->has_value()) return std::nullopt;
      if (auto* s = std::get_if<trace::TraceStep>(&(*r)->value)) {
        last_step = s->index;
        last_step_offset = (*r)->offset;
        return std::move(*s);
      }
      if (auto* e = std::get_if<trace::TraceEpoch>(&(*r)->value)) {
        epochs.push_back(std::move(*e));
        epoch_after_step.push_back(last_step);
      }
    }
  }
};

// The most rows a trace's run can shuffle, as far as its header tells without reading its data: a row of a
// data file takes at least a byte of it (a million where the data is made, not read). A recorded order of
// more is not recomputed, which would take memory for every row it claims.
uint64_t plausible_rows(const trace::TraceHeader& h) {
  uint64_t bytes = 0;
  for (const auto& d : h.datasets) bytes += d.size_bytes;
  return std::max<uint64_t>(bytes, uint64_t{1} << 20);
}

// The batches one trace's loader has handed out in its current epoch, and how many the epoch has (from its
// configuration and the rows its shuffle orders): a recorded batch past them, or one handed out already, is
// one no loader can hand out.
struct LoaderBook {
  const trace::TraceHeader* header = nullptr;
  int epoch = 0;
  std::optional<int64_t> batches;  // unknown where the configuration does not parse
  std::set<int64_t> taken;
  void shuffle(const trace::ShuffleEvent& sh) {
    epoch = sh.epoch;
    taken.clear();
    const std::optional<trace::Schedule> s = trace::recorded_schedule(*header, sh.length);
    batches = s ? std::optional<int64_t>(s->batches_per_epoch) : std::nullopt;
  }
  // Why `batch` cannot be handed out next, in replay's words ("" when it can); it is taken either way.
  std::string take(int64_t batch) {
    std::string why;
    if (batches && batch >= *batches)
      why = "epoch " + std::to_string(int64_t{epoch} + 1) + " has batches 0.." + std::to_string(*batches - 1);
    else if (taken.count(batch))
      why = "epoch " + std::to_string(int64_t{epoch} + 1) + " handed it out already";
    taken.insert(batch);
    return why;
  }
};

// Where a trace that has ended stops short, when it does: at damage (a message changed after it was
// written), or, when it ends before the other (`first`), at a cut (a killed recording). One with its footer
// ended with its run, and one still being recorded ends where the recording had got to: neither is cut.
std::optional<TraceStop> trace_stop(const StepStream& s, bool first, const std::string& side,
                                    const std::string& path, int64_t after_step) {
  const auto& stopped = s.reader->stopped();
  const bool damaged = stopped && !stopped->truncated;
  if (!damaged && (!first || s.reader->ended_cleanly() || s.reader->still_recording())) return std::nullopt;
  TraceStop stop;
  stop.damaged = damaged;
  stop.trace = path;
  stop.side = side;
  stop.after_step = after_step;
  if (stopped) stop.offset = stopped->offset;
  stop.detail = s.status.ok() ? "the file ends after a complete message, with no footer" : s.status.error().message;
  return stop;
}

}  // namespace

bool events_differ(const trace::Event& a, const trace::Event& b, FirstDivergence& d) {
  return differ(a, b, d);
}

std::optional<DataReach> recorded_data_reach(const trace::TraceHeader& ha, const trace::TraceHeader& hb,
                                             const std::string& b_path) {
  auto scratch_a = ScratchDir::create("trainrr-reach"), scratch_b = ScratchDir::create("trainrr-reach");
  if (!scratch_a || !scratch_b) return std::nullopt;
  auto copy_a = rebuild_config(ha, {}, "", false, *scratch_a);
  auto run_b = rebuild_config(hb, {}, "", false, *scratch_b);
  if (!copy_a || !run_b || copy_a->config.data.source != run_b->config.data.source) return std::nullopt;
  DataConfig other = run_b->config.data;
  for (const auto& file : data_files(other)) other.*file.second = copy_a->config.data.*file.second;
  other.scale = copy_a->config.data.scale;  // A's scaler, weighed beside B's
  auto reach = data_reach(run_b->config, other, b_path);
  if (!reach) return std::nullopt;
  reach->name_other = "A";
  reach->name_run = "B";
  return *reach;
}

std::vector<std::string> recorded_config_differences(const trace::TraceHeader& ha,
                                                     const trace::TraceHeader& hb,
                                                     std::vector<std::string>* layers,
                                                     std::vector<std::string>* layers_b) {
  auto ca = parse_config(ha.config, ha.config_path, config_folder(ha), ha.config_overrides);
  auto cb = parse_config(hb.config, hb.config_path, config_folder(hb), hb.config_overrides);
  if (!ca || !cb) {
    // A configuration this trainrr cannot read (written by another version, or changed after it was
    // written): which one, and why, rather than what cannot be compared.
    if (ha.config == hb.config && ha.config_overrides == hb.config_overrides) return {};
    std::string unread;
    if (!ca) unread += "A's (" + ca.error().message + ")";
    if (!cb) unread += std::string(unread.empty() ? "" : " and ") + "B's (" + cb.error().message + ")";
    return {"the configuration texts differ, and this trainrr cannot read " + unread};
  }
  // By the values the runs used: a run without a seed used the one it drew, so a run seeded with that
  // same number made no other choice of configuration.
  if (!ca->seed && cb->seed) ca->seed = ha.seed;
  if (!cb->seed && ca->seed) cb->seed = hb.seed;
  if (layers) *layers = layer_names(ca->layers);
  if (layers_b) *layers_b = layer_names(cb->layers);
  return config_differences(*ca, *cb);
}

std::string recorded_data_difference(const trace::TraceHeader& ha, const trace::TraceHeader& hb,
                                     std::vector<std::string>* changed,
                                     std::vector<std::string>* same_values) {
  std::string detail;
  for (const auto& da : ha.datasets)
    for (const auto& db : hb.datasets)
      if (da.name == db.name && !(da.digest == db.digest)) {
        // Named by its file, as people know it; the trace's name for it ("data", "labels") only says which.
        const std::string file = std::filesystem::path(da.path).filename().string();
        const std::string differs = "data file '" + (file.empty() ? da.name : file) + "' differs (" +
                                    da.path + ", " + std::to_string(da.size_bytes) + " bytes vs " + db.path +
                                    ", " + std::to_string(db.size_bytes) + " bytes)";
        // Both copies at hand: embedded, or at their recorded paths still holding the recorded bytes.
        DataDifference where;
        std::vector<uint8_t> read_a, read_b;
        const std::span<const uint8_t> copy_a = recorded_copy(da, read_a), copy_b = recorded_copy(db, read_b);
        if (!copy_a.empty() && !copy_b.empty()) {
          const std::string_view b(reinterpret_cast<const char*>(copy_b.data()), copy_b.size());
          // The label column each run reads, for the rows' values.
          auto label = [](const trace::TraceHeader& h) {
            auto c = parse_config(h.config, "the recorded configuration", "", h.config_overrides);
            return c && c->data.source == "csv" ? c->data.label : std::string();
          };
          where = first_data_difference(copy_a, b, da.name == "data", "A", "B", label(ha), label(hb));
        }
        if (where.same_values) {
          // Other bytes, the same data: both runs read the same values from it.
          if (same_values)
            same_values->push_back(differs + " in its bytes, not in what the runs read: " + where.where);
          continue;
        }
        if (changed) changed->push_back(da.name);
        if (!detail.empty()) detail += "; ";
        detail += differs;
        if (!where.where.empty()) detail += "; " + where.where;
      }
  return detail;
}

DiffResult diff_traces(const std::string& a_path, const std::string& b_path) {
  DiffResult res;
  auto failed = [](std::string m) {
    DiffResult r;
    r.exit_code = 2;
    r.error = std::move(m);
    return r;
  };
  for (const std::string& path : {a_path, b_path})
    if (Status s = require_replayable_trace(path, "diff"); !s) return failed(s.error().message);
  // The steps are compared, and the embedded data where both embed it: the checkpoints are not decompressed.
  trace::ReaderLimits limits;
  limits.tensor_values = false;
  auto ra = trace::TraceReader::open(a_path, limits);
  if (!ra) return failed(ra.error().message);
  auto rb = trace::TraceReader::open(b_path, limits);
  if (!rb) return failed(rb.error().message);
  const trace::TraceHeader ha = (*ra)->header(), hb = (*rb)->header();
  for (const auto& [h, path] : {std::pair{&ha, &a_path}, std::pair{&hb, &b_path}})
    if (auto mismatch = data_path_not_recorded(*h, *path)) return failed(*mismatch);
  DivergenceReport& rep = res.report;
  rep.command = "diff";
  rep.two_recordings = true;
  rep.label_a = "A";
  rep.label_b = "B";
  rep.facts.emplace_back("A", a_path);
  rep.facts.emplace_back("B", b_path);
  rep.environment = environment_differences(ha.environment, hb.environment);
  for (const auto* reader : {&*ra, &*rb})
    if (const auto& live = (*reader)->still_recording()) rep.notes.push_back(*live);
  for (const auto& [h, side] : {std::pair{&ha, "A"}, std::pair{&hb, "B"}})
    if (auto note = moving_statistics_note(*h, side)) rep.notes.push_back(*note);

  CauseInputs ci;
  KernelRegistry registry;
  register_cpu_kernels(registry);
  ci.registry = &registry;
  ci.environment = rep.environment;
  ci.seed_recorded = ha.seed;
  ci.seed_replayed = hb.seed;
  ci.seed_from_entropy = ha.seed_from_entropy || hb.seed_from_entropy;
  std::vector<std::string> layers_b;
  ci.config_differences = recorded_config_differences(ha, hb, &ci.layer_names, &layers_b);
  std::vector<std::string> changed_sets;
  std::vector<std::string> same_data;
  ci.data_detail = recorded_data_difference(ha, hb, &changed_sets, &same_data);
  for (const std::string& same : same_data) rep.notes.push_back(same);
  ci.data_changed = !ci.data_detail.empty();
  set_changed_data_sets(ci, changed_sets);
  res.config_differences = ci.config_differences;
  rep.config_differences = ci.config_differences;
  if (ci.data_changed) res.data_difference = ci.data_detail;
  // With both copies of the data at hand (embedded, or at their recorded paths as recorded), where the rows
  // that differ are first read, as B's schedule reads them.
  if (ci.data_changed && ha.world_size == 0 && hb.world_size == 0)
    ci.data_reach = recorded_data_reach(ha, hb, b_path);

  // Two recordings at different levels are compared at the shallower one: the deeper side's extra probes
  // are left out, and at level step its per-parameter digests are combined into the one digest.
  const ProbeLevel level = std::min(ha.level, hb.level);
  ci.outputs_compared = level != ProbeLevel::step;
  ci.op_outputs_compared = level == ProbeLevel::op;
  if (ha.level != hb.level)
    rep.notes.push_back(std::string("A was recorded at level ") + probe_level_name(ha.level) + ", B at level " +
                        probe_level_name(hb.level) + ": compared at level " + probe_level_name(level));
  // The moving statistics of a batch normalization are compared where both traces probe them.
  const bool moving_statistics = ha.moving_statistics && hb.moving_statistics;
  auto compared = [level, moving_statistics](const trace::Event& e) {
    const auto* p = std::get_if<trace::ProbeEvent>(&e);
    return !p || (trace::probe_recorded_at(p->site, level) &&
                  (moving_statistics || !trace::is_moving_statistics_probe(p->site)));
  };
  // Only a deeper side's per-parameter list needs combining; the rest is compared where it lies.
  std::vector<std::pair<std::string, uint64_t>> combined_a, combined_b;
  auto params_at_level = [level](const std::vector<std::pair<std::string, uint64_t>>& p,
                                 std::vector<std::pair<std::string, uint64_t>>& combined)
      -> const std::vector<std::pair<std::string, uint64_t>>& {
    if (level != ProbeLevel::step || trace::is_combined(p)) return p;
    combined = trace::parameter_digests(p, level);
    return combined;
  };

  // GPU kernels recorded on one side only: said once, as the environment is.
  if (ha.kernels_recorded != hb.kernels_recorded) {
    const trace::TraceHeader& without = ha.kernels_recorded ? hb : ha;
    rep.notes.push_back(std::string(ha.kernels_recorded ? "A" : "B") + " holds the GPU kernels CUPTI recorded, " +
                        (ha.kernels_recorded ? "B" : "A") + " does not" +
                        (without.kernels_not_recorded.empty() ? std::string()
                                                              : " (" + without.kernels_not_recorded + ")") +
                        ": their kernels are not compared");
  }
  KernelSequences kernel_sequences;

  StepStream sa{std::move(ra).value(), {}, {}, {}, -1}, sb{std::move(rb).value(), {}, {}, {}, -1};
  LoaderBook loader_a, loader_b;
  loader_a.header = &ha;
  loader_b.header = &hb;
  std::optional<FirstDivergence> first;
  std::map<std::string, std::string> kernels_a, kernels_b;
  std::map<std::string, int64_t> matched_draws;
  int64_t steps = 0, identical_through = -1, first_param_diff = -1;
  int64_t last_loss_step = -1;
  double last_loss_a = NAN, last_loss_b = NAN;
  rep.page.per_step = true;
  rep.page.layer_probes = level != ProbeLevel::step;
  // Whether either run holds out validation rows (a configuration this trainrr cannot read: taken to).
  rep.page.validation = false;
  for (const trace::TraceHeader* h : {&ha, &hb}) {
    auto c = parse_config(h->config, h->config_path, config_folder(*h), h->config_overrides);
    rep.page.validation = rep.page.validation || !c || c->train.validation_split > 0;
  }
  StepViews series;
  std::vector<std::string> keys_a, keys_b;  // one step's event keys, kept from step to step
  int64_t last_index = -1;  // the last step both traces hold
  size_t epochs_compared = 0;
  bool a_ended = false, b_ended = false;
  std::string ends_first;       // "B ends first, after 12 steps", when one does
  bool timeline_taken = false;  // the divergent step's kernels, kept for the page
  for (;;) {
    auto a = sa.next();
    auto b = sb.next();
    // An epoch's metrics, logged after its last step, come before the steps read now.
    for (; epochs_compared < std::min(sa.epochs.size(), sb.epochs.size()); ++epochs_compared)
      if (!first)
        first = metrics_divergence(
            std::max(sa.epoch_after_step[epochs_compared], sb.epoch_after_step[epochs_compared]),
            static_cast<int>(epochs_compared), sa.epochs[epochs_compared].logs,
            sb.epochs[epochs_compared].logs, "A", "B");
    if (!a || !b) {
      if (a || b) {
        ends_first = std::string(a ? "B" : "A") + " ends first, after " + counted(steps, "step");
      }
      a_ended = !a, b_ended = !b;
      break;
    }
    ++steps;
    last_index = a->index;
    series.begin_step(a->index, a->epoch, b->epoch);
    series.loss(a->end ? a->end->loss : NAN, b->end ? b->end->loss : NAN);
    if (a->index != b->index && !first) {
      first = divergence(
          std::min(a->index, b->index), "setup", "missing", "",
          "step " + std::to_string(a->index) + " (A) faces step " + std::to_string(b->index) + " (B)");
    }
    if (a->kernels && b->kernels && a->index == b->index) kernel_sequences.compare(a->index, *a->kernels, *b->kernels);
    std::vector<const trace::Event*> events_a, events_b;
    for (const auto& e : a->events)
      if (compared(e)) events_a.push_back(&e);
    for (const auto& e : b->events)
      if (compared(e)) events_b.push_back(&e);
    auto note_kernels = [&ci](const std::vector<const trace::Event*>& events,
                              std::map<std::string, std::string>& kernels, bool side_b) {
      for (const trace::Event* e : events)
        if (auto* k = std::get_if<KernelChoice>(e)) {
          kernels[k->site] = k->chosen;
          if (const std::string how = kernel_pick(*k); !how.empty())
            (side_b ? ci.kernel_picks[k->site].second : ci.kernel_picks[k->site].first) = how;
        }
    };
    note_kernels(events_a, kernels_a, false);
    note_kernels(events_b, kernels_b, true);
    // A recorded kernel no machine can run at its site makes a trace no run's: refused, as replay refuses it,
    // rather than compared as another choice.
    for (const auto& [events, h, path, index] :
         {std::tuple{&events_a, &ha, &a_path, a->index}, std::tuple{&events_b, &hb, &b_path, b->index}})
      for (const trace::Event* e : *events)
        if (auto* k = std::get_if<KernelChoice>(e))
          if (const std::string why = impossible_choice(*k, *h); !why.empty())
            return failed(kernel_refusal_message(*path, "step " + std::to_string(index) +
                                                            ": the recorded kernel " + k->chosen + " at " +
                                                            k->site + " " + why));
    // Each side's recorded batches against what its loader can hand out: why one cannot, by event.
    auto refusals = [](const std::vector<const trace::Event*>& events, LoaderBook& book) {
      std::vector<std::string> out(events.size());
      for (size_t i = 0; i < events.size(); ++i)
        if (auto* sh = std::get_if<trace::ShuffleEvent>(events[i]))
          book.shuffle(*sh);
        else if (auto* b = std::get_if<trace::BatchOrderEvent>(events[i]))
          out[i] = book.take(b->batch);
      return out;
    };
    const std::vector<std::string> refused_a = refusals(events_a, loader_a),
                                   refused_b = refusals(events_b, loader_b);
    // The first difference of the step is the earliest in the step's order, whichever side holds it.
    keys_a.clear();
    keys_b.clear();
    for (const trace::Event* e : events_a) keys_a.push_back(event_key(*e));
    for (const trace::Event* e : events_b) keys_b.push_back(event_key(*e));
    for (const AlignedEvent& at : align_events(keys_a, keys_b)) {
      const bool in_a = at.a != AlignedEvent::kAlone, in_b = at.b != AlignedEvent::kAlone;
      const std::string& key = in_a ? keys_a[at.a] : keys_b[at.b];
      if (!in_a || !in_b) {
        if (!first && !is_evidence(key))
          first = in_a ? divergence(a->index, phase_of_key(key), "missing", site_of_key(key),
                                    "A has an event at " + site_of_key(key) + " that B does not")
                       : divergence(b->index, phase_of_key(key), "extra", site_of_key(key),
                                    "B has an event at " + site_of_key(key) + " that A does not");
        continue;
      }
      const trace::Event& e = *events_a[at.a];
      const trace::Event* eb = events_b[at.b];
      if (const auto* pa = std::get_if<trace::ProbeEvent>(&e)) {
        const auto& pb = std::get<trace::ProbeEvent>(*eb);
        const bool same = pa->fingerprint.digest == pb.fingerprint.digest;
        series.probe(pa->site, phase_name(pa->phase), same ? nullptr : &pa->fingerprint.summary,
                     same ? nullptr : &pb.fingerprint.summary);
      }
      // Evidence is gathered through the step of the first divergence: which orders differed, which
      // streams still matched.
      if (first && first->step < a->index) continue;
      if (auto* oa = std::get_if<trace::AccumulationOrderEvent>(&e))
        if (oa->order != std::get<trace::AccumulationOrderEvent>(*eb).order)
          ci.order_differences.emplace(oa->site, a->index);
      FirstDivergence d;
      d.step = a->index;
      if (differ(e, *eb, d)) {
        if (d.kind == "loader")
          for (const auto& [side, why, event] :
               {std::tuple{"A", &refused_a[at.a], &e}, std::tuple{"B", &refused_b[at.b], eb}})
            if (!why->empty())
              d.detail += "; " + std::string(side) + "'s recorded batch " +
                          std::to_string(std::get<trace::BatchOrderEvent>(*event).batch) + " " +
                          std::string(kBatchRefused) + " (" + *why + ")";
        // A side's recorded draw or order that its own run cannot have made (draw_consistency.h). An order of
        // another length than the other side's is not recomputed: one of them is no order of the run's.
        for (const auto& [side, event, h] : {std::tuple{"A", &e, &ha}, std::tuple{"B", eb, &hb}}) {
          std::string why;
          if (auto* r = std::get_if<trace::RngDrawEvent>(event))
            why = key_not_of_its_seed(r->draw, h->seed);
          else if (auto* sh = std::get_if<trace::ShuffleEvent>(event);
                   sh && d.detail.find(kShuffleOfOtherRows) == std::string::npos &&
                   sh->length <= plausible_rows(*h))
            why = order_not_of_its_draw(*sh);
          if (!why.empty()) d.detail += "; " + std::string(side) + "'s trace: " + why;
        }
        if (!first) first = d;
      } else if (auto* r = std::get_if<trace::RngDrawEvent>(&e)) {
        ++matched_draws[r->draw.stream];
      }
    }
    if (a->end && b->end) {
      last_loss_step = a->index;
      last_loss_a = a->end->loss;
      last_loss_b = b->end->loss;
      const auto& params_a = params_at_level(a->end->params, combined_a);
      const auto& params_b = params_at_level(b->end->params, combined_b);
      const bool same_params = params_a == params_b;
      for (size_t i = 0; i < params_a.size() && i < params_b.size(); ++i)
        series.tensor(params_a[i].first, false, params_a[i] != params_b[i]);
      if (ha.level == hb.level)
        for (size_t i = 0; i < a->end->grads.size() && i < b->end->grads.size(); ++i)
          series.tensor(a->end->grads[i].first, true, a->end->grads[i] != b->end->grads[i]);
      if (same_params && first_param_diff < 0) identical_through = a->index;
      if (!same_params && first_param_diff < 0) first_param_diff = a->index;
      // Gradients are recorded at level layer only.
      const bool grads_differ = ha.level == hb.level && a->end->grads != b->end->grads;
      const bool loss_differs = !same_bits(a->end->loss, b->end->loss);
      // The loss is computed in the forward pass, before the backward pass and the update: one that differs is
      // the step's first difference, ahead of the gradients and parameters and of a probe of the backward pass
      // or the update that differed during the step (unless the step ran shards, each shard's backward pass
      // before the next shard's loss: their mean does not tell which came first).
      if (first && loss_differs && first->step == a->index && a->index == b->index &&
          (first->phase == "backward" || first->phase == "update") && a->collectives.empty() &&
          b->collectives.empty())
        first.reset();
      // A step's metrics (its batch's accuracy) come from the forward pass, as its loss does: one that
      // differs where the loss is the same bits is named after the loss, before the gradients.
      const std::string metric = first_metric_difference(a->end->metrics, b->end->metrics);
      if (!first && !loss_differs && !metric.empty())
        first = divergence(a->index, "forward", "step_end", "metrics",
                           "the metrics of step " + std::to_string(a->index) + " differ (" + metric +
                               "), its loss the same (" + round_trip(a->end->loss) + ")");
      if (!first && (loss_differs || grads_differ || !same_params)) {
        std::string name;
        const bool grad = !loss_differs && grads_differ;
        const auto& la = grad ? a->end->grads : params_a;
        const auto& lb = grad ? b->end->grads : params_b;
        if (!loss_differs)
          for (size_t i = 0; i < std::min(la.size(), lb.size()); ++i)
            if (la[i] != lb[i]) {
              name = la[i].first;
              break;
            }
        first =
            divergence(a->index,
                       loss_differs ? "forward"
                       : grad       ? "backward"
                                    : "update",
                       "step_end", name.empty() ? "loss" : step_end_site(name, grad),
                       (name.empty() ? "the loss of step " + std::to_string(a->index) + " differs"
                                     : what_differs(name, grad) + " after step " + std::to_string(a->index)) +
                           " (loss " + round_trip(a->end->loss) + " vs " + round_trip(b->end->loss) + ")");
      }
    }
    if (first && !timeline_taken && first->step == a->index && a->index == b->index) {
      timeline_taken = true;
      if (ha.kernels_recorded || hb.kernels_recorded) {
        rep.page.timeline.step = a->index;
        rep.page.timeline.a = std::move(a->kernels);
        rep.page.timeline.b = std::move(b->kernels);
      }
    }
  }
  if (KernelTimeline& tl = rep.page.timeline; tl.step >= 0) {
    auto missing = [&tl](const trace::TraceHeader& h, const std::optional<trace::StepKernels>& k,
                         const std::string& side, const std::string& path) -> std::string {
      if (!h.kernels_recorded)
        return side + " (" + path + ") holds no GPU kernel records" +
               (h.kernels_not_recorded.empty() ? std::string() : " (" + h.kernels_not_recorded + ")") +
               ": its side is not drawn.";
      if (!k) return side + " (" + path + ") holds no kernel record for step " + std::to_string(tl.step) + ".";
      return "";
    };
    tl.missing_a = missing(ha, tl.a, "A", a_path);
    tl.missing_b = missing(hb, tl.b, "B", b_path);
  }
  for (auto* s : {&sa, &sb})
    if (!s->status.ok()) {
      rep.notes.push_back(s->status.error().message);
      if (s->reader->stopped() && !s->reader->stopped()->truncated && !res.damage)
        res.damage = s->status.error().message;
    }
  // A trace that ends where the comparison does, damaged or cut short, is why it ends there: the report's
  // status says so, damage first.
  const auto stop_a = a_ended ? trace_stop(sa, true, "A", a_path, last_index) : std::nullopt;
  const auto stop_b = b_ended ? trace_stop(sb, true, "B", b_path, last_index) : std::nullopt;
  rep.stop = stop_a && (stop_a->damaged || !stop_b || !stop_b->damaged) ? stop_a : stop_b;
  // One trace ends first (cut, or by its configuration): the other is read on to its end, so that a cut or a
  // damage of its own further on is said in a note. Its steps past the first's end are compared with none,
  // so the report's status and exit code stay those of what was compared.
  if (a_ended != b_ended) {
    StepStream& other = a_ended ? sb : sa;
    const bool unread_error = other.status.ok();
    int64_t last = last_index;
    while (auto step = other.next()) last = step->index;
    if (auto stop = trace_stop(other, true, a_ended ? "B" : "A", a_ended ? b_path : a_path, last);
        stop && unread_error)
      rep.notes.push_back("past the steps compared, " + trace_stop_words(*stop));
  }
  // Every step the same and both runs ended there: the states they ended in, which the steps do not compare
  // all of (a batch normalization's moving statistics at level step), from their final checkpoints.
  // So are the checkpoints both hold on the way (--checkpoint-every), in step order, and the initial ones:
  // what the steps do not compare (an optimizer's slots, the random streams' offsets) is in every one.
  // Where the runs end at other steps, or a trace is cut or damaged, the checkpoints both hold before the
  // last step compared are compared as well; the state after it is one run's end and the other's checkpoint,
  // or lies past a cut, and is left out.
  // A run that ends first because its recording was stopped (Ctrl-C, an error) does not end there by its
  // configuration: the note says why it ends, and the cause does not tie its end to the configuration.
  bool stopped_early = false;
  if (!ends_first.empty()) {
    const StepStream& shorter = a_ended ? sa : sb;
    const auto& footer = shorter.reader->footer();
    stopped_early = footer && !footer->completed;
    // A run whose recording was stopped would have gone on: the steps compared are not all of the runs', and
    // the report's status says so, as for a trace cut short.
    if (stopped_early && !rep.stop) {
      TraceStop stop;
      stop.trace = a_ended ? a_path : b_path;
      stop.side = a_ended ? "A" : "B";
      stop.after_step = last_index;
      stop.stopped = footer->end_reason.empty() ? std::string("stopped") : footer->end_reason;
      rep.stop = stop;
    } else {
      rep.notes.push_back(ends_first +
                          (stopped_early ? " (its recording was stopped: " + footer->end_reason + ")" : ""));
    }
  }
  const bool ended_together = ends_first.empty() && !rep.stop && sa.reader->footer() && sb.reader->footer();
  // A difference found in step N (or in the evaluation after it): a checkpoint taken before step N that
  // differs comes first. The one taken right before step N (after step N-1) comes first where its tensors or
  // scalars differ, all made by the steps before N (an optimizer's slots after a step whose parameters
  // matched); where only its place in the run does, that is left to step N's own events (an epoch's
  // shuffle, drawn between the steps, is in it), as the initial state is left to step 0's setup draws.
  if (steps > 0) {
    const auto in_a = state_offsets(a_path, sa.reader.get()), in_b = state_offsets(b_path, sb.reader.get());
    CheckpointReader read_a(a_path), read_b(b_path);
    std::optional<int64_t> same_before;  // the steps done at the last state that compared the same
    for (const auto& [at, offset] : in_a) {
      const auto other = in_b.find(at);
      if (first ? at > first->step : at > last_index + 1 || (at == last_index + 1 && !ended_together)) break;
      if (other == in_b.end()) continue;
      auto state_a = read_a.read(offset, at), state_b = read_b.read(other->second, at);
      if (!state_a || !state_b) continue;
      auto d = state_difference(*state_a, *state_b, at == 0 ? 0 : at - 1, "A", "B",
                                at == 0                ? StatePlace::initial
                                : at == last_index + 1 ? StatePlace::end
                                                       : StatePlace::checkpoint,
                                same_before);
      if (!d) same_before = at;
      if (d) {
        // The initial state is what step 0's setup drew, compared there event by event.
        if (first && at == first->step && (at == 0 || d->site == "(place in the run)")) break;
        first = std::move(d);
        break;
      }
    }
  }
  for (const auto& [site, k] : kernels_a)
    if (kernels_b.count(site) && kernels_b[site] != k) ci.kernel_differences[site] = {k, kernels_b[site]};
  ci.kernels = kernels_a;
  ci.name_a = "A";
  ci.name_b = "B";
  ci.matched_draws = matched_draws;

  // The epochs that ended within the steps compared: one logged past them (the longer run's, read on for a
  // cut) has no end on the page's axis.
  for (int side = 0; side < 2; ++side) {
    const StepStream& s = side ? sb : sa;
    for (size_t k = 0; k < s.epochs.size(); ++k)
      if (k >= s.epoch_after_step.size() || s.epoch_after_step[k] <= last_index)
        series.epoch_logs(side, s.epochs[k].epoch, s.epochs[k].logs);
  }
  series.finish(rep.page);
  rep.page.environment = side_by_side_table(ha.environment, hb.environment);
  rep.page.kernels = side_by_side_table(kernels_a, kernels_b);
  rep.page.command = "trainrr diff " + shell_word(a_path) + " " + shell_word(b_path);
  rep.facts.emplace_back("steps compared", std::to_string(steps));
  // A difference that never reaches the parameters (a dead unit's input, say): said, as nothing downstream
  // differs.
  if (first && first_param_diff < 0 && last_loss_step >= 0)
    rep.facts.emplace_back(
        "trainable parameters identical through step",
        std::to_string(identical_through) + ", the last compared: no step's trainable parameters differ");
  if (first_param_diff >= 0) {
    rep.facts.emplace_back("trainable parameters identical through step",
                           identical_through < 0
                               ? (first && in_initial_weights(*first) ? "none: the initial weights differ"
                                                                      : "none: they differ after step 0")
                               : std::to_string(identical_through));
    // The last step both traces hold, which is not the last of either when one ends first.
    rep.facts.emplace_back("loss at step " + std::to_string(last_loss_step),
                           round_trip(last_loss_a) + " (A) vs " + round_trip(last_loss_b) + " (B)");
  }
  // Runs whose data or configuration differ are other runs, though every value compared is the same: one
  // that changes only how many steps run (train.epochs) too, as one side holds steps the other lacks.
  const bool identical = !first && !ci.data_changed && ci.config_differences.empty();
  const bool length_only =
      !ci.config_differences.empty() && differences_within_steps(ci.config_differences).empty();
  // With nothing else differing, the cause says it.
  const bool some_length = std::any_of(ci.config_differences.begin(), ci.config_differences.end(),
                                       [](const std::string& c) { return changes_only_length(c); });
  if (some_length && (first || ci.data_changed || !length_only)) {
    std::string keys;
    for (const std::string& c : ci.config_differences)
      if (changes_only_length(c)) keys += (keys.empty() ? "" : "; ") + c;
    rep.notes.push_back("the configurations differ (" + keys +
                        "), which changes how many steps run, not what a step computes: the steps both runs "
                        "have are compared");
  }
  // Each epoch's metrics side by side show the drift; for identical runs they would repeat equal numbers.
  const size_t epochs = identical ? 0 : std::min(sa.epochs.size(), sb.epochs.size());
  for (size_t e = 0; e < epochs; ++e) {
    std::string line;
    bool differ = false;
    for (const auto& [k, v] : sa.epochs[e].logs)
      for (const auto& [k2, v2] : sb.epochs[e].logs)
        if (k == k2) {
          const auto [va, vb] = side_by_side(v, v2);
          line += (line.empty() ? "" : ", ") + k + " " + va + " vs " + vb;
          differ |= !same_bits(v, v2);
        }
    // With no value of a step differing, only an epoch whose metrics differ (a validation row changed) says
    // more.
    if (first || differ) rep.notes.push_back("epoch " + std::to_string(e + 1) + ": " + line);
  }

  // Other kernels that computed the same bits are other choices, made inside cuDNN and cuBLASLt.
  if (kernel_sequences.first && identical) rep.same_choices = false;
  if (kernel_sequences.first)
    rep.notes.push_back("the GPU kernels differ in " + std::to_string(kernel_sequences.differing) + " of " +
                        counted(kernel_sequences.compared, "step") + " compared, first at " + *kernel_sequences.first +
                        (identical ? ", yet every compared value is the same" : ""));
  if (identical) {
    // Two kernels can compute the same bits (a first-ready and an ordered loader that happened to hand out
    // the same batches, say): the runs are identical, their choices were not.
    if (!ci.kernel_differences.empty()) {
      rep.same_choices = false;
      std::string ks;
      for (const auto& [site, ab] : ci.kernel_differences)
        ks += (ks.empty() ? "" : "; ") + site + ": " + ab.first + " vs " + ab.second;
      rep.notes.push_back("the kernel selections differ (" + ks + "), yet every compared value is the same");
    }
    // An accumulation order is a recorded choice too (replay forces it): orders that differ are other
    // choices.
    if (!ci.order_differences.empty()) {
      rep.other_orders = true;
      std::vector<std::string> sites;
      for (const auto& [site, step] : ci.order_differences)
        sites.push_back(site + " from step " + std::to_string(step));
      rep.notes.push_back("the recorded accumulation orders differ at " +
                          counted(static_cast<int64_t>(sites.size()), "site") + " (" + first_of(sites, 5) +
                          "), yet every compared value is the same");
    }
    // A site one trace holds a choice for and the other none: the choices there are not known to be the same.
    for (const auto& [one, other, who] :
         {std::tuple{&kernels_a, &kernels_b, "A"}, std::tuple{&kernels_b, &kernels_a, "B"}}) {
      std::vector<std::string> only;
      for (const auto& [site, k] : *one)
        if (!other->count(site)) only.push_back(site);
      if (only.empty()) continue;
      rep.choices_unknown = true;
      rep.notes.push_back(std::string(who) + " holds kernel choices that " + (who[0] == 'A' ? "B" : "A") +
                          " does not, at " + counted(static_cast<int64_t>(only.size()), "site") + " (" +
                          first_of(only, 5) + "): the two runs' choices there cannot be compared");
    }
    res.exit_code = 0;
    return res;
  }
  rep.diverged = true;
  res.exit_code = 1;
  FirstDivergence d = first ? *first : divergence(0, "setup", "config", "config");
  if (d.kind != "state") split_site(d.site, d.layer, d.op);  // a tensor's name is no site
  const bool at_evaluation = d.kind == "metrics";
  if (at_evaluation) {  // the site is a metric's name, no layer's
    d.layer.clear();
    d.op.clear();
  }
  const std::string ks = kernel_site_of(d.site);
  if (d.kind == "probe") {
    if (kernels_a.count(ks)) d.kernel_recorded = kernels_a[ks];
    if (kernels_b.count(ks)) d.kernel_replayed = kernels_b[ks];
  }
  // The layers a difference is placed among are those of the run that has its layer (B's, for an event of a
  // layer A lacks); where both have it at other places, the run with more layers before it, whose keys up to
  // it then reach it in one run or the other.
  if (const std::string of = layer_of(d); !of.empty()) {
    const auto in_a = std::find(ci.layer_names.begin(), ci.layer_names.end(), of);
    const auto in_b = std::find(layers_b.begin(), layers_b.end(), of);
    if (in_b != layers_b.end() &&
        (in_a == ci.layer_names.end() || in_b - layers_b.begin() > in_a - ci.layer_names.begin()))
      ci.layer_names = layers_b;
  }
  rep.cause = classify(d, ci);
  // The last step of a trace cut short has no message after it to vouch for its record.
  for (const auto& [stream, side] : {std::pair{&sa, "A"}, std::pair{&sb, "B"}})
    if (first && d.kind != "state" && stream->unvouched(d.step))
      rep.cause.detail +=
          std::string("; but step ") + std::to_string(d.step) + "'s record in " + side +
          " is the last whole message of a trace cut short, which no message after it vouches "
          "for: a change made to it after it was written would read as this difference too";
  // Where the data is the cause (an evaluation's difference that the rows read cannot explain is not).
  if ((!first || at_evaluation) && ci.data_changed && rep.cause.category == "data") {
    const auto within = differences_within_steps(ci.config_differences);
    std::string keys;
    for (const std::string& c : within) keys += (keys.empty() ? "" : "; ") + c;
    const DataReach* reach = ci.data_reach ? &*ci.data_reach : nullptr;
    rep.cause.detail =
        ci.data_detail +
        (at_evaluation
             ? "; no value compared in the steps before it differs: the evaluation read what differs (" +
                   (reach && reach->validation ? std::string("a validation row")
                    : reach && reach->test     ? std::string("a test row")
                                               : std::string("rows it only validates on, say")) +
                   "), and the training read none of it or changed no value compared"
             : "; no value of any step compared differs: " + unread_data_words(reach, steps - 1)) +
        (keys.empty() ? std::string() : "; the run configuration differs too: " + keys);
  } else if (!first && length_only) {
    std::string keys;
    for (const std::string& c : ci.config_differences) keys += (keys.empty() ? "" : "; ") + c;
    rep.cause = {"config",
                 "the run configuration differs: " + keys +
                     ", which changes how many steps run, not what a step computes" +
                     // A trace cut or damaged ends first where it stops, not where its
                     // configuration ends it: its status says so.
                     (ends_first.empty() || rep.stop || stopped_early ? std::string() : ": " + ends_first) +
                     ", and the steps both runs have are the same"};
  }
  {
    // Whatever the cause, the differences it cannot name, as they cannot change the first difference.
    std::vector<std::string> apart;
    for (const std::string& c : differences_within_steps(ci.config_differences))
      if (!difference_reaches(c, d, ci.layer_names)) apart.push_back(c);
    std::string keys;
    for (const std::string& c : apart) keys += (keys.empty() ? "" : "; ") + c;
    if (!apart.empty())
      rep.notes.push_back("the configurations differ too (" + keys +
                          "), in nothing the first difference depends on: " + reach_words(apart, d));
  }
  // Inputs that differ while every compared value is the same: no step, no op differs.
  if (first) rep.first = d;
  return res;
}

}  // namespace trainrr
