#include <map>
#include <optional>

#include "engine/config.h"
#include "replayer/divergence.h"
#include "replayer/replayer.h"
#include "replayer/runs.h"
#include "traces/trace_reader.h"

namespace trainrr {

namespace {

// A rank's steps, read to the end of what its trace holds (a cut trace: its complete steps).
std::vector<trace::TraceStep> read_steps(const std::string& path, std::vector<std::string>& notes,
                                         std::vector<std::string>& damaged) {
  std::vector<trace::TraceStep> steps;
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader) return steps;
  for (;;) {
    auto record = (*reader)->next();
    if (!record) {
      const auto& stop = (*reader)->stopped();
      if (stop && !stop->truncated) damaged.push_back(record.error().message);
      else notes.push_back(record.error().message + "; compared up to there");
      break;
    }
    if (!*record) break;
    if (auto* step = std::get_if<trace::TraceStep>(&(*record)->value); step && step->end)
      steps.push_back(std::move(*step));
  }
  return steps;
}

struct Side {
  trace::RunSet run;
  std::vector<std::vector<trace::TraceStep>> steps;  // by rank
  std::string library;
};

// "seed: 7 vs 8; train.batch_size: 32 vs 48": the configuration keys whose values differ between the runs.
std::string config_differences(const trace::TraceHeader& a, const trace::TraceHeader& b) {
  auto ca = parse_config(a.config, a.config_path, config_folder(a), a.config_overrides);
  auto cb = parse_config(b.config, b.config_path, config_folder(b), b.config_overrides);
  if (!ca || !cb) return "";
  const auto fa = flatten_config(*ca), fb = flatten_config(*cb);
  std::map<std::string, std::pair<std::string, std::string>> both;
  for (const auto& [k, v] : fa) both[k].first = v;
  for (const auto& [k, v] : fb) both[k].second = v;
  std::string out;
  for (const auto& [k, v] : both)
    if (v.first != v.second) out += (out.empty() ? "" : "; ") + k + ": " + v.first + " vs " + v.second;
  return out;
}

}  // namespace

namespace {

RunReport compare_runs(const std::string& a_path, const std::string& b_path, std::vector<std::string>& damaged) {
  RunReport out;
  Side side[2];
  std::vector<std::string> notes;
  const std::string paths[2] = {a_path, b_path};
  for (int i = 0; i < 2; ++i) {
    auto run = trace::open_run(paths[i]);
    if (!run) return {2, run.error().message, {}};
    side[i].run = std::move(run).value();
    for (const auto& p : side[i].run.paths) side[i].steps.push_back(read_steps(p, notes, damaged));
    side[i].library = recorded_settings(side[i].run.headers[0]).library;
  }
  const Side &A = side[0], &B = side[1];
  const std::string configs = config_differences(A.run.headers[0], B.run.headers[0]);
  auto config_note = [&] {
    if (!configs.empty()) out.lines.push_back("  note: the configurations differ: " + configs);
  };
  const int na = A.run.world_size, nb = B.run.world_size;
  size_t steps = SIZE_MAX;
  for (const Side& s : side)
    for (const auto& r : s.steps) steps = std::min(steps, r.size());
  if (steps == SIZE_MAX || steps == 0) return {2, "no complete step to compare in " + a_path + " and " + b_path, {}};

  auto head = [&](int64_t step, const std::string& rest) {
    out.lines.push_back("diverged at step " + std::to_string(step) + ", " + rest);
    out.exit_code = 1;
  };
  // Shard k of a side: which rank holds it, and its call entry.
  struct ShardAt {
    int rank;
    size_t index;
  };
  for (size_t t = 0; t < steps; ++t) {
    const int64_t step = A.steps[0][t].index;
    if (B.steps[0][t].index != step) {
      head(step, "the runs' steps are not aligned (step " + std::to_string(B.steps[0][t].index) + " in B)");
      return out;
    }
    const size_t buckets = A.steps[0][t].collectives.size();
    if (buckets != B.steps[0][t].collectives.size()) {
      head(step, std::to_string(buckets) + " allreduce calls in A, " +
                     std::to_string(B.steps[0][t].collectives.size()) + " in B");
      return out;
    }
    for (size_t bi = 0; bi < buckets; ++bi) {
      const CollectiveCall& ca = A.steps[0][t].collectives[bi];
      const CollectiveCall& cb = B.steps[0][t].collectives[bi];
      if (ca.shards != cb.shards || ca.count != cb.count) {
        head(step, "allreduce/bucket_" + std::to_string(bi) + ": A cuts the global batch into " +
                       std::to_string(ca.shards) + " shards and " + std::to_string(ca.count) +
                       " elements, B into " + std::to_string(cb.shards) + " and " + std::to_string(cb.count) +
                       "; shard by shard comparison needs the same shards");
        out.lines.push_back("  cause: config (distributed.shards or the model)");
        return out;
      }
      // Every shard of the global batch: its rows, then its gradient.
      for (int k = 0; k < ca.shards; ++k) {
        const int ra = k / (ca.shards / na), rb = k / (cb.shards / nb);
        const size_t ia = k - A.steps[ra][t].collectives[bi].first_shard;
        const size_t ib = k - B.steps[rb][t].collectives[bi].first_shard;
        const CollectiveCall& xa = A.steps[ra][t].collectives[bi];
        const CollectiveCall& xb = B.steps[rb][t].collectives[bi];
        if (ia >= xa.shard_rows.size() || ib >= xb.shard_rows.size()) continue;
        if (xa.shard_rows[ia] != xb.shard_rows[ib]) {
          head(step, "shard " + std::to_string(k) + " (rank " + std::to_string(ra) + " in A, rank " +
                         std::to_string(rb) + " in B)");
          out.lines.push_back("  cause: data/sharding: the shard's rows of the global batch differ");
          config_note();
          return out;
        }
      }
      for (int k = 0; k < ca.shards; ++k) {
        const int ra = k / (ca.shards / na), rb = k / (cb.shards / nb);
        const CollectiveCall& xa = A.steps[ra][t].collectives[bi];
        const CollectiveCall& xb = B.steps[rb][t].collectives[bi];
        const size_t ia = k - xa.first_shard, ib = k - xb.first_shard;
        if (ia >= xa.shard_digests.size() || ib >= xb.shard_digests.size()) continue;
        if (xa.shard_digests[ia] != xb.shard_digests[ib]) {
          head(step, "rank " + std::to_string(ra) + " (A) / rank " + std::to_string(rb) +
                         " (B), the gradient of shard " + std::to_string(k) + " going into allreduce/bucket_" +
                         std::to_string(bi));
          out.lines.push_back("  cause: upstream of the allreduce: the same rows give a different gradient (rng, "
                              "kernel or numeric: replay each rank to find the op)");
          config_note();
          return out;
        }
      }
      if (ca.result_digest != cb.result_digest) {
        head(step, "allreduce/bucket_" + std::to_string(bi) + " (" + ca.variant + " in A, " + cb.variant + " in B)");
        out.lines.push_back("  cause: collective: every shard's gradient going in matches, the sum differs: " +
                            collective_detail(ca, cb, A.library, B.library));
        config_note();
        return out;
      }
    }
    const auto& ea = *A.steps[0][t].end;
    const auto& eb = *B.steps[0][t].end;
    if (ea.params != eb.params) {
      head(step, "the parameters after the update (rank 0)");
      out.lines.push_back("  cause: after the allreduce: its results match, the update differs (optimizer or "
                          "configuration)");
      config_note();
      return out;
    }
  }
  const std::string what = counted(static_cast<int64_t>(steps), "step") +
                           ": every shard's rows and gradient, every allreduce result and the parameters match";
  out.lines.push_back("identical: " + what);
  if (na != nb) {
    const std::string variant = A.steps[0][0].collectives.empty() ? "" : A.steps[0][0].collectives[0].variant;
    out.lines.push_back("  reproduced despite the rank count (" + std::to_string(na) + " ranks in A, " +
                        std::to_string(nb) + " in B)" + (variant.empty() ? "" : " with " + variant));
  }
  config_note();
  for (const auto& n : notes) out.lines.push_back("  note: " + n);
  return out;
}

}  // namespace

RunReport diff_runs(const std::string& a_path, const std::string& b_path) {
  std::vector<std::string> damaged;
  RunReport out = compare_runs(a_path, b_path, damaged);
  // A damaged rank trace (changed after it was written) is compared up to the damage; the command exits 2.
  if (!damaged.empty() && out.exit_code < 2) {
    out.exit_code = 2;
    out.error = damaged[0] + " (damaged: changed after it was written; compared up to there)";
  }
  return out;
}

}  // namespace trainrr
