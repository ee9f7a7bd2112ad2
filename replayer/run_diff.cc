#include <map>
#include <optional>
#include <set>

#include "engine/config.h"
#include "engine/kernels/kernel_registry.h"
#include "replayer/cause.h"
#include "replayer/data_reach.h"
#include "replayer/diff.h"
#include "replayer/divergence.h"
#include "replayer/event_keys.h"
#include "replayer/final_state.h"
#include "replayer/replayer.h"
#include "replayer/runs.h"
#include "traces/trace_reader.h"

namespace trainrr {

namespace {

// An epoch's metrics, with the number of complete steps read before they were logged.
struct EpochLog {
  trace::TraceEpoch epoch;
  size_t after_steps = 0;
};

// A rank's steps, read to the end of what its trace holds (a cut or damaged trace: its complete steps before
// where reading stopped; run_extent() says where that is), and the epochs' metrics logged between them.
std::vector<trace::TraceStep> read_steps(const std::string& path, std::vector<EpochLog>* epochs) {
  std::vector<trace::TraceStep> steps;
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader) return steps;
  for (;;) {
    auto record = (*reader)->next();
    if (!record || !*record) break;
    if (auto* step = std::get_if<trace::TraceStep>(&(*record)->value); step && step->end)
      steps.push_back(std::move(*step));
    else if (auto* e = std::get_if<trace::TraceEpoch>(&(*record)->value); e && epochs)
      epochs->push_back({std::move(*e), steps.size()});
  }
  return steps;
}

struct Side {
  trace::RunSet run;
  std::vector<std::vector<trace::TraceStep>> steps;  // by rank
  // Every rank's epochs, rank 0's first: a rank logs the loss and accuracy of its own shards of each batch.
  std::vector<std::vector<EpochLog>> rank_epochs;
  const std::vector<EpochLog>& epochs() const { return rank_epochs.front(); }  // rank 0's
  std::string library;
};

// The kernel each site of a rank's steps chose, as recorded (the last choice per site).
std::map<std::string, std::string> kernels_of(const std::vector<trace::TraceStep>& steps) {
  std::map<std::string, std::string> out;
  for (const auto& step : steps)
    for (const auto& e : step.events)
      if (const auto* k = std::get_if<KernelChoice>(&e)) out[k->site] = k->chosen;
  return out;
}

}  // namespace

namespace {

// The allreduce variant a run used, as its configuration names it ("mpi" for allreduce__mpi); "" when no
// step records an allreduce.
std::string variant_used(const Side& side) {
  for (const auto& rank : side.steps)
    for (const auto& step : rank)
      for (const auto& call : step.collectives)
        if (!call.variant.empty())
          return call.variant.rfind("allreduce__", 0) == 0 ? call.variant.substr(11) : call.variant;
  return "";
}

// Configuration differences by what each run used where a run's configuration leaves a value to the run:
// distributed.shards 0 is one shard per rank, distributed.allreduce "auto" the variant its policy picks.
// Two runs that used the same do not differ there.
std::vector<std::string> effective_differences(const std::vector<std::string>& configs, const Side& a,
                                               const Side& b) {
  std::vector<std::string> out;
  for (const std::string& c : configs) {
    const size_t colon = c.find(": "), arrow = c.find(" -> ");
    const std::string key = c.substr(0, colon);
    if (colon == std::string::npos || arrow == std::string::npos ||
        (key != "distributed.shards" && key != "distributed.allreduce")) {
      out.push_back(c);
      continue;
    }
    std::string va = c.substr(colon + 2, arrow - colon - 2), vb = c.substr(arrow + 4);
    auto used = [&key](std::string& v, const Side& side) {
      if (key == "distributed.shards" && (v == "0" || v == "(none)")) v = std::to_string(side.run.world_size);
      const std::string variant = variant_used(side);
      if (key == "distributed.allreduce" && (v == "auto" || v == "(none)") && !variant.empty())
        v = variant + " (auto)";
    };
    used(va, a);
    used(vb, b);
    // "mpi (auto)" and "mpi" ran the same variant.
    auto plain = [](const std::string& v) { return v.substr(0, v.find(" (auto)")); };
    if (plain(va) != plain(vb)) out.push_back(key + ": " + va + " -> " + vb);
  }
  return out;
}

// What differs between rank `ra` of A and rank `rb` of B that can make a shard's gradient differ with its
// rows the same: the kernels they chose through step `t` and their environments (instruction set, threads,
// libraries), in words ("" when neither does), as for two traces of one process.
// `forward_only`: for a difference of the forward pass (the loss), the backward ops, which run after it, are
// left out.
std::string rank_evidence(const Side& a, int ra, const Side& b, int rb, size_t t, bool forward_only = false) {
  auto chosen = [t, forward_only](const Side& side, int rank) {
    std::map<std::string, std::string> kernels;
    for (size_t i = 0; i <= t && i < side.steps[rank].size(); ++i)
      for (const auto& e : side.steps[rank][i].events)
        if (const auto* k = std::get_if<KernelChoice>(&e);
            k && k->site != "data/loader" && !(forward_only && k->site.find(".bwd") != std::string::npos))
          kernels[k->site] = k->chosen;
    return kernels;
  };
  const auto ka = chosen(a, ra), kb = chosen(b, rb);
  std::string kernels;
  for (const auto& [site, kernel] : ka)
    if (auto it = kb.find(site); it != kb.end() && it->second != kernel)
      kernels += (kernels.empty() ? "" : "; ") + site + ": " + kernel + " vs " + it->second;
  std::string env;
  for (const auto& e : environment_differences(a.run.headers[ra].environment, b.run.headers[rb].environment))
    if (e.key.rfind("mpi.", 0) != 0 && e.key != "host")
      env += (env.empty() ? "" : ", ") + e.key + " " + e.recorded + " vs " + e.replayed;
  std::string out;
  if (!kernels.empty()) out += "; the two ranks ran other kernels: " + kernels;
  if (!env.empty()) out += "; their environments differ: " + env;
  return out;
}

// The loader rank 0 ran (it picks every rank's batch), from the choices recorded through `steps`.
std::string loader_of(const std::vector<trace::TraceStep>& steps) {
  for (const auto& st : steps)
    for (const auto& e : st.events)
      if (const auto* k = std::get_if<KernelChoice>(&e); k && k->site == "data/loader") return k->chosen;
  return "";
}

std::optional<int64_t> batch_of(const trace::TraceStep& step) {
  for (const auto& e : step.events)
    if (const auto* b = std::get_if<trace::BatchOrderEvent>(&e)) return b->batch;
  return std::nullopt;
}

// A side's random draws in step `t`: every rank's, each (site, stream, occurrence) once (every rank draws the
// initial values; a shard's streams only the rank that computes it), rank 0's in its event order first.
// `pre`: those drawn before the step's batch is handed out (the initial values, the split, the shuffle),
// `post` the others (a shard's dropout).
struct StepDraws {
  std::vector<std::pair<std::string, const trace::RngDrawEvent*>> pre, post;
};

StepDraws draws_of(const std::vector<std::vector<trace::TraceStep>>& ranks, size_t t) {
  StepDraws out;
  std::set<std::string> seen;
  for (const auto& rank : ranks) {
    if (t >= rank.size()) continue;
    std::map<std::string, int> occurrence;
    bool after_batch = false;
    for (const auto& e : rank[t].events) {
      after_batch = after_batch || std::holds_alternative<trace::BatchOrderEvent>(e);
      const auto* r = std::get_if<trace::RngDrawEvent>(&e);
      if (!r) continue;
      const std::string name = r->draw.site + "|" + r->draw.stream;
      const int n = occurrence[name]++;
      const std::string key = name + "|" + std::to_string(n);
      if (seen.insert(key).second) (after_batch ? out.post : out.pre).emplace_back(key, r);
    }
  }
  return out;
}

// The first draw of `a` (in its order) that `b` made otherwise, as diff.cc compares one process's draws.
std::optional<FirstDivergence> first_draw_difference(
    int64_t step, const std::vector<std::pair<std::string, const trace::RngDrawEvent*>>& a,
    const std::vector<std::pair<std::string, const trace::RngDrawEvent*>>& b) {
  const std::map<std::string, const trace::RngDrawEvent*> in_b(b.begin(), b.end());
  for (const auto& [key, ra] : a) {
    const auto it = in_b.find(key);
    if (it == in_b.end()) continue;
    const trace::RngDrawEvent& rb = *it->second;
    const bool same_draw =
        ra->draw.key == rb.draw.key && ra->draw.counter == rb.draw.counter && ra->draw.count == rb.draw.count;
    if (same_draw && ra->digest == rb.digest) continue;
    const std::string& site = ra->draw.site;
    const std::string detail =
        same_draw ? "draw at " + site + ": " + draw_str(ra->draw) +
                        " on both sides (the same draw, made into other values: digest " +
                        digest_str(ra->digest) + " (A) vs " + digest_str(rb.digest) + " (B))"
                  : "draw at " + site + ": " + draw_str(ra->draw) + " (A), " + draw_str(rb.draw) + " (B)" +
                        (ra->digest == rb.digest ? " (the same values, from another draw)" : "");
    FirstDivergence d = divergence(step, event_phase("rng", site), "rng", site, detail);
    d.same_draw = same_draw;
    d.same_count = ra->draw.count == rb.draw.count;
    return d;
  }
  return std::nullopt;
}

RunReport compare_runs(const std::string& a_path, const std::string& b_path) {
  RunReport out;
  Side side[2];
  RunExtent extent[2];
  const std::string paths[2] = {a_path, b_path};
  for (int i = 0; i < 2; ++i) {
    auto run = trace::open_run(paths[i]);
    if (!run) return {2, run.error().message, {}};
    if (Status s = require_complete_steps(*run); !s) return {2, s.error().message, {}};
    side[i].run = std::move(run).value();
    for (const auto& p : side[i].run.paths)
      side[i].steps.push_back(read_steps(p, &side[i].rank_epochs.emplace_back()));
    side[i].library = recorded_settings(side[i].run.headers[0]).library;
    extent[i] = run_extent(side[i].run);
  }
  const Side &A = side[0], &B = side[1];
  const trace::TraceHeader &ha = A.run.headers[0], &hb = B.run.headers[0];
  // What the runs were asked to run: their configurations and data, as for two traces of one process.
  std::vector<std::string> layers;
  const std::vector<std::string> configs =
      effective_differences(recorded_config_differences(ha, hb, &layers), A, B);
  std::vector<std::string> same_data;  // data files of other bytes that hold the same values
  const std::string data = recorded_data_difference(ha, hb, nullptr, &same_data);
  const std::vector<std::string> within = differences_within_steps(configs);
  std::string within_text, length;
  for (const std::string& c : within) within_text += (within_text.empty() ? "" : "; ") + c;
  for (const std::string& c : configs)
    if (changes_only_length(c)) length += (length.empty() ? "" : "; ") + c;
  const int na = A.run.world_size, nb = B.run.world_size;
  size_t steps = SIZE_MAX;
  for (const Side& s : side)
    for (const auto& r : s.steps) steps = std::min(steps, r.size());
  if (steps == SIZE_MAX || steps == 0) return {2, "no complete step to compare in " + a_path + " and " + b_path, {}};

  const std::string loader_a = loader_of(A.steps[0]), loader_b = loader_of(B.steps[0]);
  // Where the rows that differ are first read, with both copies of the data at hand, as B's rank 0 recorded
  // the global batches.
  std::optional<DataReach> reach;
  if (!data.empty()) reach = recorded_data_reach(ha, hb, B.run.paths[0]);
  // The cause of the first difference `d`: the data or a configuration difference that reaches it, as for
  // one process, else `found` (what the runs' records show there).
  // `own`: the cause to name when neither the data nor the configuration reaches `d` ("" : `found` is).
  auto head = [&](const FirstDivergence& d, const std::string& rest, const std::string& found,
                  const std::string& own = "") {
    out.lines.push_back(d.kind == "state" ? state_headline(d) + ", " + rest
                                          : "diverged at step " + std::to_string(d.step) + ", " + rest);
    out.exit_code = 1;
    std::vector<std::string> reaching, apart;
    for (const std::string& c : within) (difference_reaches(c, d, layers) ? reaching : apart).push_back(c);
    std::string joined_reaching;
    for (const auto& c : reaching) joined_reaching += (joined_reaching.empty() ? "" : "; ") + c;
    // Data that cannot have made `d` is named beside the cause the rest gives: by what it is
    // (data_not_reaching), or by where its rows are first read, as for one process (the global batch is the
    // batch rank 0's loader hands out, as one process's).
    std::string data_apart = data.empty() ? "" : data_not_reaching(d, ha.seed != hb.seed, loader_a, loader_b);
    if (!data.empty() && data_apart.empty() && reach) {
      CauseInputs rows;
      rows.data_reach = reach;
      rows.layer_names = layers;
      data_apart = data_not_reaching_rows(d, rows);
    }
    if (!data.empty() && data_apart.empty()) {
      out.lines.push_back(
          "  cause: data: " + data + "; " +
          (reach && reach->first_step >= 0 && reach->first_step <= d.step ? data_reach_words(*reach)
           : reach || d.phase == "setup" || d.site == "data/split" ? "the data differs before any step runs"
                                                                   : kDataReachUnknown) +
          (d.kind == "metrics" ? "; no value compared in the steps before it differs: the evaluation read "
                                 "what differs (rows it only validates "
                                 "on, say), and the training read none of it or changed no value compared"
                               : "") +
          (reaching.empty() ? "" : "; the run configuration differs too: " + joined_reaching));
      out.lines.push_back("  what: " + found);
    } else if (!reaching.empty()) {
      out.lines.push_back("  cause: config: the run configuration differs: " + joined_reaching);
      out.lines.push_back("  what: " + found);
    } else if (!own.empty()) {
      out.lines.push_back("  cause: " + own);
      // A cause that holds what was found says it once.
      if (own.find(found) == std::string::npos) out.lines.push_back("  what: " + found);
    } else {
      out.lines.push_back("  cause: " + found);
    }
    if (!apart.empty()) {
      std::string keys;
      for (const auto& c : apart) keys += (keys.empty() ? "" : "; ") + c;
      out.lines.push_back("  note: the configurations differ too (" + keys +
                          "), in nothing the first difference depends on: " + reach_words(apart, d));
    }
    if (!data_apart.empty())
      out.lines.push_back("  note: the data differs too, but cannot have made this difference (" +
                          data_apart + "): " + data);
  };
  // The metrics of the epochs both runs logged within the first `done` steps, where the steps before match.
  size_t epochs_compared = 0;
  // A run records the epoch metrics of rank 0's shards: runs of other rank counts cover other rows there.
  const bool epochs_comparable = na == nb;
  auto compare_epochs = [&](size_t done) {
    if (!epochs_comparable) return;
    for (; out.exit_code == 0 && epochs_compared < std::min(A.epochs().size(), B.epochs().size());
         ++epochs_compared) {
      const EpochLog &ea = A.epochs()[epochs_compared], &eb = B.epochs()[epochs_compared];
      if (ea.after_steps > done || eb.after_steps > done || ea.after_steps == 0 || eb.after_steps == 0) break;
      const int64_t at = A.steps[0][std::max(ea.after_steps, eb.after_steps) - 1].index;
      // Each rank's metrics, of its own shards: rank by rank.
      for (int r = 0; r < na && out.exit_code == 0; ++r) {
        const auto &ra = A.rank_epochs[r], &rb = B.rank_epochs[r];
        if (epochs_compared >= ra.size() || epochs_compared >= rb.size()) continue;
        if (auto d = metrics_divergence(at, static_cast<int>(epochs_compared), ra[epochs_compared].epoch.logs,
                                        rb[epochs_compared].epoch.logs, "A", "B"))
          head(*d,
               (r > 0 ? "rank " + std::to_string(r) + ", " : std::string()) + "evaluation (" + d->site + ")",
               d->detail, [&] {
                 const Cause c = epoch_log_cause(d->site, 0, false);
                 return c.category + ": " + c.detail;
               }());
      }
    }
  };
  // Each rank's loss of a step, over its own shards of the batch, rank by rank where the runs have as many
  // ranks (with other rank counts a rank's shards are other rows).
  bool losses_compared = false;
  auto compare_losses = [&](size_t t) {
    losses_compared = true;
    if (na != nb) return;
    for (int r = 0; r < na && out.exit_code == 0; ++r) {
      const trace::TraceStep &sa = A.steps[r][t], &sb = B.steps[r][t];
      if (sa.index != sb.index) continue;
      // The loss, then the step's metrics (its shards' accuracy), both of the forward pass.
      const std::string metric = first_metric_difference(sa.end->metrics, sb.end->metrics);
      const bool loss_differs = !same_bits(sa.end->loss, sb.end->loss);
      if (!loss_differs && metric.empty()) continue;
      const std::string detail =
          loss_differs ? "the loss of step " + std::to_string(sa.index) + " differs on rank " +
                             std::to_string(r) + ", over its shards of the batch (loss " +
                             round_trip(sa.end->loss) + " vs " + round_trip(sb.end->loss) + ")"
                       : "the metrics of step " + std::to_string(sa.index) + " differ on rank " +
                             std::to_string(r) + ", over its shards of the batch (" + metric +
                             "), its loss the same (" + round_trip(sa.end->loss) + ")";
      const std::string site = loss_differs ? "loss" : "metrics";
      // The rank's rows and draws matched: what the records show of the two ranks (the kernels of the forward
      // pass, the environments) is the evidence, named beside a configuration that reaches the loss too.
      const std::string evidence = rank_evidence(A, r, B, r, t, true);
      const std::string same = "the rank's shards hold the same rows of the data set and its draws match";
      head(divergence(sa.index, "forward", "step_end", site, detail),
           "rank " + std::to_string(r) + ", " + site + " (forward)", detail + evidence,
           evidence.find("ran other kernels") != std::string::npos
               ? "kernel: " + same + ", and the two ranks ran other kernels in the forward pass (below)"
           : !evidence.empty() ? "numeric: " + same + ", and the two ranks' environments differ (below)"
                               : "unexplained: " + same +
                                     ", and nothing recorded about the two ranks differs "
                                     "(their kernels, their environments)");
    }
  };
  for (size_t t = 0; t < steps && out.exit_code == 0; ++t) {
    losses_compared = false;
    compare_epochs(t);
    if (out.exit_code != 0) break;
    const int64_t step = A.steps[0][t].index;
    if (B.steps[0][t].index != step) {
      head(divergence(step, "setup", "config", "config"), "the runs' steps are not aligned",
           "step " + std::to_string(step) + " in A is step " + std::to_string(B.steps[0][t].index) + " in B");
      break;
    }
    // The draws made before the batch is handed out (the initial values, the split, the shuffle), in the
    // order the step made them, as diff.cc compares one process's; a shard's draws after its rows.
    const StepDraws draws_a = draws_of(A.steps, t), draws_b = draws_of(B.steps, t);
    auto draw_head = [&](const FirstDivergence& d) {
      head(d, d.site + " (" + d.phase + ")", "rng: " + d.detail,
           ha.seed != hb.seed ? "rng: the run seed differs: " + std::to_string(ha.seed) + " (A) vs " +
                                    std::to_string(hb.seed) + " (B)"
                              : "");
    };
    if (auto d = first_draw_difference(step, draws_a.pre, draws_b.pre)) {
      draw_head(*d);
      break;
    }
    // The split's rows (a stratified split reads the labels: the same draw can split other rows) and each
    // epoch's shuffle, as rank 0 recorded them (every rank makes the same), in the order the step made them.
    {
      auto orders = [](const trace::TraceStep& s) {
        std::vector<const trace::Event*> out;
        for (const auto& e : s.events)
          if (std::holds_alternative<trace::SplitEvent>(e) || std::holds_alternative<trace::ShuffleEvent>(e))
            out.push_back(&e);
        return out;
      };
      const auto oa = orders(A.steps[0][t]), ob = orders(B.steps[0][t]);
      std::optional<FirstDivergence> found;
      for (size_t i = 0; i < std::min(oa.size(), ob.size()) && !found; ++i) {
        if (oa[i]->index() != ob[i]->index()) break;
        FirstDivergence d = divergence(step, "", "", "");
        if (events_differ(*oa[i], *ob[i], d)) found = d;
      }
      if (found) {
        head(*found, found->site + " (" + found->phase + ")", found->kind + ": " + found->detail);
        break;
      }
    }
    // Rank 0's loader picks the global batch: another batch makes every shard's rows differ.
    const auto batch_a = batch_of(A.steps[0][t]), batch_b = batch_of(B.steps[0][t]);
    if (batch_a && batch_b && *batch_a != *batch_b) {
      std::string found = "loader: batch " + std::to_string(*batch_a) + " (A), batch " +
                          std::to_string(*batch_b) + " (B), handed out by rank 0's loader";
      if (loader_a != loader_b && !loader_a.empty() && !loader_b.empty())
        found += "; loader " + loader_a + " (A), " + loader_b + " (B)";
      else if (loader_a.find("first_ready") != std::string::npos ||
               loader_b.find("first_ready") != std::string::npos)
        found += "; a first-ready loader hands out batches in the order its workers finish";
      head(divergence(step, "input", "loader", "data/loader"), "rank 0, data/loader (input)", found);
      break;
    }
    const size_t buckets = A.steps[0][t].collectives.size();
    if (buckets != B.steps[0][t].collectives.size()) {
      head(divergence(step, "backward", "collective", "allreduce"), "the allreduce calls",
           std::to_string(buckets) + " allreduce calls in A, " +
               std::to_string(B.steps[0][t].collectives.size()) + " in B");
      break;
    }
    for (size_t bi = 0; bi < buckets && out.exit_code == 0; ++bi) {
      const CollectiveCall& ca = A.steps[0][t].collectives[bi];
      const CollectiveCall& cb = B.steps[0][t].collectives[bi];
      const std::string bucket = "allreduce/bucket_" + std::to_string(bi);
      if (ca.shards != cb.shards || ca.count != cb.count) {
        const std::string at = "diverged at step " + std::to_string(step) + ", " + bucket + ": ";
        std::string cause;
        if (ca.shards != cb.shards) {
          out.lines.push_back(at + "A cuts the global batch into " + counted(ca.shards, "micro-batch shard") +
                              ", B into " + std::to_string(cb.shards) +
                              "; a shard by shard comparison needs the same shards");
          bool shards_key = false;
          for (const std::string& c : within) shards_key |= c.rfind("distributed.shards:", 0) == 0;
          // The same configuration, distributed.shards unset: one shard per rank, as many as the ranks.
          if (!shards_key && na != nb && ca.shards == na && cb.shards == nb)
            cause = "rank count: " + counted(na, "rank") + " in A, " + std::to_string(nb) +
                    " in B, with distributed.shards unset (one shard per rank)" +
                    (within.empty() ? std::string(" and the same configuration")
                                    : "; the run configuration differs too: " + within_text) +
                    ": record both with distributed.shards set to the same value (a multiple of both rank "
                    "counts) to compare them shard by shard";
        } else {
          out.lines.push_back(at + "A's bucket holds " + counted(ca.count, "gradient element") + ", B's " +
                              std::to_string(cb.count) + ": the models' parameters differ");
        }
        if (cause.empty())
          cause = "config" + (within.empty() ? std::string(ca.shards != cb.shards ? " (distributed.shards)"
                                                                                  : " (the model)")
                                             : ": the run configuration differs: " + within_text);
        out.lines.push_back("  cause: " + cause);
        out.exit_code = 1;
        break;
      }
      // Every shard of the global batch: its rows, then its gradient.
      for (int k = 0; k < ca.shards && out.exit_code == 0; ++k) {
        const int ra = k / (ca.shards / na), rb = k / (cb.shards / nb);
        const size_t ia = k - A.steps[ra][t].collectives[bi].first_shard;
        const size_t ib = k - B.steps[rb][t].collectives[bi].first_shard;
        const CollectiveCall& xa = A.steps[ra][t].collectives[bi];
        const CollectiveCall& xb = B.steps[rb][t].collectives[bi];
        if (ia >= xa.shard_rows.size() || ib >= xb.shard_rows.size()) continue;
        if (xa.shard_rows[ia] != xb.shard_rows[ib])
          head(divergence(step, "input", "sharding", "data/sharding"),
               "shard " + std::to_string(k) + " (rank " + std::to_string(ra) + " in A, rank " +
                   std::to_string(rb) + " in B)",
               "data/sharding: the shard's rows of the global batch differ");
      }
      // A shard's draws (its dropout) come after its rows, before its gradient.
      if (out.exit_code == 0 && bi == 0)
        if (auto d = first_draw_difference(step, draws_a.post, draws_b.post)) draw_head(*d);
      // A rank of one shard computes its loss before its gradient.
      if (out.exit_code == 0 && bi == 0 && ca.shards == na && cb.shards == nb) compare_losses(t);
      for (int k = 0; k < ca.shards && out.exit_code == 0; ++k) {
        const int ra = k / (ca.shards / na), rb = k / (cb.shards / nb);
        const CollectiveCall& xa = A.steps[ra][t].collectives[bi];
        const CollectiveCall& xb = B.steps[rb][t].collectives[bi];
        const size_t ia = k - xa.first_shard, ib = k - xb.first_shard;
        if (ia >= xa.shard_digests.size() || ib >= xb.shard_digests.size()) continue;
        if (xa.shard_digests[ia] != xb.shard_digests[ib])
          head(
              divergence(step, "backward", "collective", bucket),
              "rank " + std::to_string(ra) + " (A) / rank " + std::to_string(rb) +
                  " (B), the gradient of shard " + std::to_string(k) + " going into " + bucket,
              "upstream of the allreduce: the shard holds the same rows of the data set (by index), its "
              "gradient differs" +
                  [&] {
                    const std::string evidence = rank_evidence(A, ra, B, rb, t);
                    return evidence.empty()
                               ? std::string(
                                     " (the rows' values, rng, a kernel or numerics: replay each rank to "
                                     "find the op)")
                               : evidence;
                  }());
      }
      if (out.exit_code == 0 && ca.result_digest != cb.result_digest)
        head(divergence(step, "allreduce", "collective", bucket),
             bucket + " (" + ca.variant + " in A, " + cb.variant + " in B)",
             "collective: every shard's gradient going in matches, the sum differs: " +
                 collective_detail(ca, cb, A.library, B.library));
    }
    if (out.exit_code != 0) break;
    // Ranks of several shards each: one shard's backward pass runs before the next shard's loss, so a loss
    // that differs is named only where every gradient matched.
    if (!losses_compared) compare_losses(t);
    // Every rank's parameters: each updates its own copy, and one that differs from the others is the desync
    // a data-parallel run can suffer. Ranks of runs of other rank counts pair up as far as both have them.
    for (int r = 0; r < std::max(na, nb) && out.exit_code == 0; ++r) {
      const int ra = std::min(r, na - 1), rb = std::min(r, nb - 1);
      if (A.steps[ra][t].index != step || B.steps[rb][t].index != step) continue;
      if (A.steps[ra][t].end->params != B.steps[rb][t].end->params)
        head(divergence(step, "update", "step_end", "parameters"),
             "the parameters after the update (" +
                 (na == nb ? "rank " + std::to_string(ra)
                           : "rank " + std::to_string(ra) + " in A, rank " + std::to_string(rb) + " in B") +
                 ")",
             "after the allreduce: its results match, the update differs (optimizer or configuration)");
    }
  }
  compare_epochs(steps);
  // Every step the same and every trace whole: the states each rank's trace holds (the initial one, those of
  // --checkpoint-every, the final one), rank by rank in step order, as for one process. They hold what the
  // steps do not compare: an optimizer's slots, the epoch's counts, the random streams' offsets.
  // Where a trace is cut, damaged or still being recorded, or the runs end at other steps, the checkpoints
  // before the last step compared are compared; the state after it is one run's end and the other's
  // checkpoint, or lies past a cut, and is left out.
  const bool whole = !extent[0].stop && !extent[1].stop && extent[0].live.empty() && extent[1].live.empty() &&
                     extent[0].steps == extent[1].steps;
  if (out.exit_code == 0 && na == nb) {
    std::vector<std::map<int64_t, uint64_t>> in_a, in_b;
    std::vector<CheckpointReader> read_a, read_b;
    std::set<int64_t> at_steps;
    for (int r = 0; r < na; ++r) {
      in_a.push_back(state_offsets(A.run.paths[r]));
      in_b.push_back(state_offsets(B.run.paths[r]));
      read_a.emplace_back(A.run.paths[r]);
      read_b.emplace_back(B.run.paths[r]);
      for (const auto& [at, offset] : in_a.back()) at_steps.insert(at);
    }
    const int64_t last = static_cast<int64_t>(steps);  // the states after the last step both runs hold
    for (auto at = at_steps.begin();
         at != at_steps.end() && (*at < last || (*at == last && whole)) && out.exit_code == 0; ++at)
      for (int r = 0; r < na && out.exit_code == 0; ++r) {
        const auto oa = in_a[r].find(*at), ob = in_b[r].find(*at);
        if (oa == in_a[r].end() || ob == in_b[r].end()) continue;
        auto state_a = read_a[r].read(oa->second, *at), state_b = read_b[r].read(ob->second, *at);
        if (!state_a || !state_b) continue;
        auto d = state_difference(*state_a, *state_b, *at == 0 ? 0 : *at - 1, "A", "B",
                                  *at == 0      ? StatePlace::initial
                                  : *at == last ? StatePlace::end
                                                : StatePlace::checkpoint);
        if (!d) continue;
        KernelRegistry registry;
        register_cpu_kernels(registry);
        CauseInputs ci;
        ci.name_a = "A";
        ci.name_b = "B";
        ci.layer_names = layers;
        ci.registry = &registry;
        ci.environment = environment_differences(A.run.headers[r].environment, B.run.headers[r].environment);
        ci.kernels = kernels_of(A.steps[r]);
        for (const auto& [site, kernel] : kernels_of(B.steps[r]))
          if (auto it = ci.kernels.find(site); it != ci.kernels.end() && it->second != kernel)
            ci.kernel_differences[site] = {it->second, kernel};
        ci.seed_recorded = ha.seed;
        ci.seed_replayed = hb.seed;
        const Cause c = classify(*d, ci);
        head(*d, "rank " + std::to_string(r) + site_words(*d), d->detail, c.category + ": " + c.detail);
      }
  }
  // Where a rank's trace stops short: the damaged one first, then the side that holds fewer steps.
  // A run whose every rank trace holds more steps than were compared (the other run ended first) did not end
  // the comparison: a note says where its trace stops.
  std::optional<RankStop> stop;
  std::string stop_side;
  std::vector<std::string> stops_past;
  for (int i = 0; i < 2; ++i) {
    const auto& s = extent[i].stop;
    if (s && extent[i].steps > static_cast<int64_t>(steps)) {
      stops_past.push_back("past the steps compared, " + stop_words(*s, i == 0 ? "A" : "B"));
      continue;
    }
    if (s && (!stop || (s->damaged && !stop->damaged) ||
              (s->damaged == stop->damaged && s->steps < stop->steps))) {
      stop = s;
      stop_side = i == 0 ? "A" : "B";
    }
  }
  // A damaged rank trace beside a cut one that ends first: the cut ends what is compared, and is said too.
  std::optional<RankStop> cut_first;
  std::string cut_side;
  if (stop && stop->damaged)
    for (int i = 0; i < 2; ++i)
      if (const auto& c = extent[i].cut_stop;
          c && c->steps < stop->steps && (!cut_first || c->steps < cut_first->steps)) {
        cut_first = c;
        cut_side = i == 0 ? "A" : "B";
      }
  bool length_in_cause = false;  // the cause says the runs differ only in how many steps they run
  if (out.exit_code == 0) {
    const std::string what =
        counted(static_cast<int64_t>(steps), "step") +
        ": every shard's rows and gradient, every allreduce result and the parameters match";
    // Runs whose inputs differ are "diverged in the inputs only", as for one process, a cut trace said after
    // the cause; a damaged one heads the report.
    const bool inputs_differ = !data.empty() || !within.empty() || !length.empty();
    if (stop && (stop->damaged || !inputs_differ)) {
      out.lines.push_back(std::string(stop->damaged ? "damaged: " : "truncated: ") +
                          stop_words(*stop, stop_side) + "; the steps " +
                          (cut_first       ? "every trace holds"
                           : stop->damaged ? "before it"
                                           : "both hold") +
                          " are identical: " + what);
      if (cut_first)
        out.lines.push_back("  truncated: " + stop_words(*cut_first, cut_side) +
                            ": the steps every trace holds end there");
    } else if (inputs_differ)
      // The runs' inputs differ, yet no value compared does.
      out.lines.push_back("diverged in the inputs only: no value compared differs (" +
                          counted(static_cast<int64_t>(steps), "step") + " compared)");
    else if (const int shorter = extent[0].steps < extent[1].steps   ? 0
                                 : extent[1].steps < extent[0].steps ? 1
                                                                     : -1;
             shorter >= 0 && extent[shorter].stopped_rank >= 0)
      // A run whose recording was stopped would have gone on: not all of the runs were compared, as for a
      // trace of one process.
      out.lines.push_back(
          "truncated: the recording of " + std::string(shorter == 0 ? "A" : "B") + " (" + paths[shorter] +
          ") ends after step " + std::to_string(extent[shorter].steps - 1) + ": " +
          stopped_words(extent[shorter].stopped_reason,
                        "rank " + std::to_string(extent[shorter].stopped_rank) + "'s footer: ") +
          " before its run's end; the steps both hold are identical: " + what);
    else
      out.lines.push_back("identical: " + what);
    if (!data.empty() || !within.empty()) {
      out.lines.push_back(
          !data.empty() ? "  cause: data: " + data +
                              (within.empty() ? "" : "; the run configuration differs too: " + within_text)
                        : "  cause: config: the run configuration differs: " + within_text);
      out.exit_code = 1;
    } else if (!length.empty()) {
      const int64_t sa = extent[0].steps, sb = extent[1].steps;
      out.lines.push_back("  cause: config: the run configuration differs: " + length +
                          ", which changes how many steps run, not what a step computes" +
                          // A run that ends first where its trace is cut does not end there by its
                          // configuration: its status says where it stops.
                          (sa == sb || (stop && stop_side == (sa < sb ? "A" : "B"))
                               ? std::string()
                               : std::string(": ") + (sa < sb ? "A" : "B") + " ends first, after " +
                                     counted(std::min(sa, sb), "step")) +
                          ", and the steps both runs have are the same");
      length_in_cause = true;
      out.exit_code = 1;
    } else if (na != nb) {
      const std::string variant =
          A.steps[0][0].collectives.empty() ? "" : A.steps[0][0].collectives[0].variant;
      out.lines.push_back("  reproduced despite the rank count (" + std::to_string(na) + " ranks in A, " +
                          std::to_string(nb) + " in B)" + (variant.empty() ? "" : " with " + variant));
    }
    if (stop && !stop->damaged && inputs_differ) {
      out.lines.push_back("  truncated: " + stop_words(*stop, stop_side) + ": nothing after it is compared");
      if (cut_first)
        out.lines.push_back("  truncated: " + stop_words(*cut_first, cut_side) +
                            ": the steps every trace holds end there");
    }
    // Runs that summed their gradients with other allreduce variants (an automatic choice under other
    // policies), every result the same bits: said, as kernel selections that differ are for one process.
    if (out.exit_code == 0 && !A.steps.empty() && !B.steps.empty() && !A.steps[0].empty() &&
        !B.steps[0].empty() && !A.steps[0][0].collectives.empty() && !B.steps[0][0].collectives.empty()) {
      const std::string va = A.steps[0][0].collectives[0].variant, vb = B.steps[0][0].collectives[0].variant;
      if (va != vb)
        out.lines.push_back("  note: the allreduce differs (" + va + " (A) vs " + vb +
                            " (B)), yet every allreduce result is the same bits");
    }
  } else if (stop) {
    out.lines.insert(out.lines.begin() + 1,
                     std::string("  ") + (stop->damaged ? "damaged: " : "truncated: ") +
                         stop_words(*stop, stop_side) + ": nothing after it is compared");
  }
  if (!length.empty() && !length_in_cause)
    out.lines.push_back(
        "  note: the configurations differ (" + length +
        "), which changes how many steps run, not what a step computes: the steps both runs have "
        "are compared");
  if (!epochs_comparable && !A.epochs().empty() && !B.epochs().empty())
    out.lines.push_back(
        "  note: each run's epoch metrics cover the rows of rank 0's shards, which differ with the "
        "rank count (" +
        counted(na, "rank") + " in A, " + std::to_string(nb) + " in B): they are not compared");
  for (const std::string& past : stops_past) out.lines.push_back("  note: " + past);
  for (const std::string& same : same_data) out.lines.push_back("  note: " + same);
  if (extent[0].steps != extent[1].steps)
    out.lines.push_back("  note: A holds " + counted(extent[0].steps, "complete step") + ", B " +
                        counted(extent[1].steps, "complete step") + ": the steps from step " +
                        std::to_string(std::min(extent[0].steps, extent[1].steps)) + " on are not compared");
  // Rank by rank: ranks may run on other machines or with other variables. Runs of other rank counts pair
  // each rank of the one with more ranks with the rank of the other that computes its shards (the shards are
  // cut evenly, in order, among a run's ranks).
  std::vector<int> env_ranks;
  std::vector<std::vector<EnvDifference>> env;
  for (int r = 0; r < std::max(na, nb); ++r) {
    const int ra = na >= nb ? r : r * na / nb, rb = nb >= na ? r : r * nb / na;
    env_ranks.push_back(r);
    env.push_back(environment_differences(A.run.headers[ra].environment, B.run.headers[rb].environment));
  }
  if (const auto lines = ranked_environment_lines(env_ranks, env, "A", "B"); !lines.empty()) {
    out.lines.push_back(na == nb ? std::string("environment differences:")
                                 : std::string("environment differences (by ") + (na > nb ? "A" : "B") +
                                       "'s ranks, each against the rank of " + (na > nb ? "B" : "A") +
                                       " that computes its shards):");
    out.lines.insert(out.lines.end(), lines.begin(), lines.end());
  }
  // A damaged rank trace (changed after it was written) is compared up to the damage; the command exits 2.
  if (stop && stop->damaged && out.exit_code < 2) {
    out.exit_code = 2;
    out.error = stop_words(*stop, stop_side) + " (damaged: compared up to there)";
  }
  return out;
}

}  // namespace

RunReport diff_runs(const std::string& a_path, const std::string& b_path) {
  return compare_runs(a_path, b_path);
}

}  // namespace trainrr
