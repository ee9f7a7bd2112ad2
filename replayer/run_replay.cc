#include <optional>
#include <thread>

#include "engine/kernels/kernel_registry.h"
#include "engine/local_group.h"
#include "engine/trainer.h"
#include "replayer/replay_hooks.h"
#include "replayer/replayer.h"
#include "replayer/runs.h"
#include "replayer/scratch.h"
#include "traces/trace_reader.h"

namespace trainrr {

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

}  // namespace

CollectiveSettings recorded_settings(const trace::TraceHeader& h) {
  CollectiveSettings s;
  s.library = env_value(h, "mpi.library");
  s.dynamic_rules = env_value(h, "mpi.coll_tuned_use_dynamic_rules") == "true";
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

RunReport replay_run(const RunReplayOptions& o) {
  RunReport out;
  auto run = trace::open_run(o.folder);
  if (!run) return {2, run.error().message, {}};
  const int n = run->world_size;
  const CollectiveSettings settings = recorded_settings(run->headers[0]);

  // The variant and grouping rank 0 recorded, from its first step with collectives: an Open MPI algorithm
  // that this process cannot emulate is refused before anything runs.
  std::optional<CollectiveCall> first_call;
  {
    auto reader = trace::TraceReader::open(run->paths[0]);
    if (!reader) return {2, reader.error().message, {}};
    while (!first_call) {
      auto record = (*reader)->next();
      if (!record || !*record) break;
      if (const auto* step = std::get_if<trace::TraceStep>(&(*record)->value); step && !step->collectives.empty())
        first_call = step->collectives[0];
    }
  }
  if (first_call && first_call->variant == kAllreduceMpi && o.force.kernels) {
    CollectiveCall probe;
    const MpiAlgorithm a = describe_mpi_algorithm(settings, n, first_call->count * 4, probe);
    const MpiAlgorithm e = ompi414_effective(a, n, first_call->count, settings.segment_bytes);
    std::vector<float> x(4, 1.0f), y(4);
    std::vector<std::span<const float>> parts(n, std::span<const float>(x));
    if (!ompi414_emulate(e, parts, y))
      return {3,
              o.folder + ": the run's allreduce__mpi ran Open MPI's " + mpi_algorithm_name(static_cast<int>(e)) +
                  " algorithm over " + std::to_string(n) + " ranks (" + (settings.library.empty() ? "library not recorded" : settings.library) +
                  "), which a replay in one process cannot emulate: replay it under mpirun -n " + std::to_string(n) +
                  " (mpirun -n " + std::to_string(n) + " trainrr replay " + o.folder + ")",
              {}};
  }

  auto scratch = ScratchDir::create("trainrr-run");
  if (!scratch) return {2, scratch.error().message, {}};
  std::vector<RunConfig> configs;
  for (int r = 0; r < n; ++r) {
    auto rebuilt = rebuild_config(run->headers[r], o.overrides, "", false, *scratch);
    if (!rebuilt) return {2, run->paths[r] + ": " + rebuilt.error().message, {}};
    configs.push_back(rebuilt->config);
  }

  KernelRegistry registry;
  register_cpu_kernels(registry);
  LocalGroup group(n, settings);
  std::vector<std::optional<ReplaySide>> sides(n);
  std::vector<std::string> errors(n);
  std::vector<bool> cannot(n, false);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto side = make_replay_side(run->paths[r], configs[r], registry, o.force, {}, run->headers[r].level, true,
                                     0, &group.member(r));
        if (!side) {
          errors[r] = side.error().message;
          group.abort("rank " + std::to_string(r) + " could not start");
          return;
        }
        sides[r].emplace(std::move(side).value());
        if (Status s = sides[r]->training->fit(o.to_step); !s) {
          errors[r] = s.error().message;
          group.abort("rank " + std::to_string(r) + " stopped");
        }
      } catch (const GroupAborted&) {
        // Another rank's error says why.
      } catch (const CannotEmulate& e) {
        errors[r] = e.what();
        cannot[r] = true;
        group.abort(e.what());
      } catch (const std::exception& e) {
        errors[r] = e.what();
        group.abort("rank " + std::to_string(r) + ": " + e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r)
    if (!errors[r].empty())
      return {cannot[r] ? 3 : 2, "rank " + std::to_string(r) + " (" + run->paths[r] + "): " + errors[r], {}};

  // The first difference: the earliest step; within it the sharding, then the shard gradients, then the
  // allreduce result, then the step's end; the lowest rank.
  struct Found {
    int64_t step;
    int priority;
    int rank;
  };
  std::optional<Found> best;
  auto consider = [&](Found f) {
    if (!best || std::tie(f.step, f.priority, f.rank) < std::tie(best->step, best->priority, best->rank)) best = f;
  };
  for (int r = 0; r < n; ++r) {
    const ReplayHooks& h = *sides[r]->hooks;
    if (const auto& m = h.collective_mismatch())
      consider({m->recorded.step, m->kind == "sharding" ? 0 : m->kind == "input" ? 1 : 2, r});
    if (h.first()) consider({h.first()->step, 3, r});
  }
  const ReplayHooks& h0 = *sides[0]->hooks;
  const std::string how = std::to_string(n) + " rank" + (n == 1 ? "" : "s") + " replayed in one process (no mpirun)";
  if (!best) {
    out.lines.push_back("reproduced bit for bit: " + how + ", " + counted(h0.steps_compared(), "step") + " and " +
                        counted(h0.collectives_compared(), "allreduce call") + " compared per rank");
    if (first_call)
      out.lines.push_back("  allreduce: " + first_call->variant + ", " + algorithm_text(*first_call));
    return out;
  }
  out.exit_code = 1;
  const ReplayHooks& h = *sides[best->rank]->hooks;
  const std::string at = "diverged at step " + std::to_string(best->step) + ", rank " + std::to_string(best->rank);
  if (best->priority < 3) {
    const auto& m = *h.collective_mismatch();
    const std::string site = "allreduce/bucket_" + std::to_string(m.recorded.bucket);
    out.lines.push_back(at + ", " + site + " (" + m.recorded.variant + ")");
    if (m.kind == "sharding") {
      out.lines.push_back("  cause: data/sharding: the rows of shard " + std::to_string(m.shard) + " (rank " +
                          std::to_string(best->rank) + ") differ from the recording's");
    } else if (m.kind == "input") {
      out.lines.push_back("  cause: upstream of the allreduce: rank " + std::to_string(best->rank) +
                          "'s gradient of shard " + std::to_string(m.shard) + " differs from the recording's" +
                          (h.first() ? " (its first difference: " + h.first()->site + ")" : std::string()));
    } else {
      out.lines.push_back("  cause: collective: every rank's input to the allreduce matches the recording, its result differs: " +
                          collective_detail(m.recorded, m.replayed, settings.library, settings.library));
    }
  } else {
    const FirstDivergence& d = *h.first();
    out.lines.push_back(at + ", " + d.site + " (" + d.phase + ")");
    out.lines.push_back("  cause: after the allreduce: every allreduce call of the step matched the recording; " +
                        (d.detail.empty() ? std::string("the step's end differs") : d.detail));
  }
  out.lines.push_back("  " + how);
  return out;
}

}  // namespace trainrr
