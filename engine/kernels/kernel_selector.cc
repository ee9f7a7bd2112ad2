#include "engine/kernels/kernel_selector.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "engine/kernels/matmul_blocked.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/thread_pool.h"

namespace trainrr {

const char* policy_name(Policy p) {
  switch (p) {
    case Policy::fast: return "default";
    case Policy::deterministic: return "deterministic";
    case Policy::autotune: return "autotune";
    case Policy::portable: return "portable";
    case Policy::forced: return "forced";
  }
  return "?";
}

Result<Policy> parse_policy(std::string_view name) {
  if (name == "default") return Policy::fast;
  if (name == "deterministic") return Policy::deterministic;
  if (name == "autotune") return Policy::autotune;
  if (name == "portable") return Policy::portable;
  if (name == "forced") return Policy::forced;
  return Error{"unknown policy '" + std::string(name) + "' (expected default, deterministic, autotune or portable)"};
}

KernelSelector::KernelSelector(const KernelRegistry& registry, Policy policy, Isa isa, ThreadPool& pool,
                               Hooks& hooks)
    : registry_(&registry), policy_(policy), isa_(isa), pool_(&pool), hooks_(&hooks) {}

namespace {

// Thresholds of the default rule.
constexpr double kLargeReduce = 65536;  // elements: below this a parallel loop costs more than it saves
constexpr int64_t kSplitKMinK = 1024;

// The kernel of `variant` ("cpu_blocked", "cpu_im2col", ...) with the best instruction set this run
// allows; null if the candidates have none.
const Kernel* best_isa(const std::vector<const Kernel*>& candidates, std::string_view variant) {
  const Kernel* best = nullptr;
  for (const Kernel* k : candidates) {
    const std::string_view id = k->info.id;
    const size_t sep = id.find("__");
    if (sep == std::string_view::npos || !id.substr(sep + 2).starts_with(variant)) continue;
    if (!best || k->info.isa >= best->info.isa) best = k;
  }
  return best;
}

const Kernel* by_id(const std::vector<const Kernel*>& candidates, std::string_view id) {
  for (const Kernel* k : candidates)
    if (k->info.id == id) return k;
  return nullptr;
}

}  // namespace

// The rule, in words: take the fastest kernel whose bits do not depend on the thread count, except under
// the default policy with several threads, where a thread-dependent or completion-order kernel is taken
// when it pays: split-k for a long reduction into a small C, atomic accumulation for a large sum, the
// first-ready loader. The deterministic policy thus makes the default choices wherever those are
// already deterministic, and determinism costs only where the default gambles.
const Kernel* KernelSelector::default_choice(OpKind op, const WorkShape& s,
                                             const std::vector<const Kernel*>& candidates,
                                             std::string& reason) const {
  const bool fast = policy_ != Policy::deterministic && policy_ != Policy::portable;
  const int threads = pool_->threads();
  // Under autotune, a site it does not time (the loader, say) takes the default policy's rule, and says so.
  const std::string prefix =
      std::string(policy_ == Policy::portable   ? "portable"
                  : policy_ == Policy::autotune ? "default (autotune times no candidates here)"
                  : fast                        ? "default"
                                                : "deterministic") +
      ": ";
  // The portable kernels of matmul and conv2d: the generic arithmetic with the widest registers here.
  if (policy_ == Policy::portable && op != OpKind::reduce && op != OpKind::loader)
    for (const Kernel* k : candidates)
      if (k->info.id.ends_with("__cpu_portable")) {
        reason = prefix + "the same bits on every x86-64 CPU (unfused, " + isa_name(portable_isa()) + " registers)";
        return k;
      }
  const std::string on_threads = ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
  const Kernel* pick = nullptr;
  switch (op) {
    case OpKind::matmul:
      if (fast && threads > 1 && s.k >= kSplitKMinK && s.k > 8 * s.m * s.n &&
          (pick = best_isa(candidates, "cpu_splitk_threads"))) {
        reason = prefix + "k=" + std::to_string(s.k) + " > 8*m*n=" + std::to_string(8 * s.m * s.n) + on_threads;
      } else if ((pick = best_isa(candidates, "cpu_blocked"))) {
        reason = prefix + "blocked, best instruction set " + isa_name(pick->info.isa);
      }
      break;
    case OpKind::reduce: {
      const double elements = s.m > 0 && s.n > 0 ? static_cast<double>(s.m) * s.n : s.work;
      const std::string size = std::to_string(static_cast<int64_t>(elements)) + " elements";
      if (elements >= kLargeReduce) {
        if (fast && threads > 1 && (pick = by_id(candidates, "f32_sum__cpu_atomic_threads")))
          reason = prefix + size + " >= " + std::to_string(static_cast<int64_t>(kLargeReduce)) + on_threads;
        else if ((pick = by_id(candidates, "f32_sum__cpu_chunked_threads")))
          reason = prefix + size + " >= " + std::to_string(static_cast<int64_t>(kLargeReduce)) +
                   ", fixed chunks" + on_threads;
      } else if (s.n <= 1 && (pick = by_id(candidates, "f32_sum__cpu_pairwise"))) {
        reason = prefix + "small plain sum (" + size + "), pairwise for accuracy";
      } else if ((pick = by_id(candidates, "f32_sum__cpu_sequential"))) {
        reason = prefix + "small column sums (" + size + ")";
      }
      break;
    }
    case OpKind::conv2d_fwd:
    case OpKind::conv2d_bwd_data:
    case OpKind::conv2d_bwd_filter:
      if ((pick = best_isa(candidates, "cpu_im2col")))
        reason = prefix + "im2col, best instruction set " + isa_name(pick->info.isa);
      break;
    case OpKind::loader:
      if (fast && threads > 1 && (pick = by_id(candidates, "loader__first_ready")))
        reason = prefix + "first ready" + on_threads;
      else if ((pick = by_id(candidates, "loader__ordered")))
        reason = prefix + "ordered" + on_threads;
      break;
    case OpKind::allreduce:
      // What Horovod and DDP do by default (MPI_Allreduce as the library picks); the deterministic policy
      // takes trainrr's fixed tree, the same bits for any power-of-two rank count.
      if (fast && (pick = by_id(candidates, "allreduce__mpi")))
        reason = prefix + "the MPI library's own allreduce";
      else if ((pick = by_id(candidates, "allreduce__trainrr_tree")))
        reason = prefix + "fixed pairwise tree over the micro-batch shards";
      break;
  }
  if (!pick && !candidates.empty()) {
    // A registry without the usual families (tests, partial builds): the most specialised one.
    pick = candidates.back();
    reason = prefix + "last registered candidate";
  }
  return pick;
}

const Kernel& KernelSelector::select(std::string_view site, OpKind op, double work,
                                     const std::function<void(const Kernel&)>& trial) {
  return select(site, op, WorkShape{work}, trial);
}

const Kernel& KernelSelector::select(std::string_view site, OpKind op, const WorkShape& shape,
                                     const std::function<void(const Kernel&)>& trial) {
  if (auto it = chosen_.find(site); it != chosen_.end()) return *it->second;

  std::vector<const Kernel*> candidates = registry_->candidates(op, isa_);
  if (policy_ == Policy::deterministic || policy_ == Policy::portable)
    std::erase_if(candidates, [](const Kernel* k) { return !k->info.deterministic || k->info.thread_dependent; });
  if (policy_ == Policy::portable)
    std::erase_if(candidates, [](const Kernel* k) { return !k->info.portable; });

  KernelChoice choice;
  choice.site = std::string(site);
  choice.op = op_name(op);
  for (const Kernel* k : candidates) choice.candidates.push_back(k->info.id);

  const Kernel* pick = nullptr;
  switch (policy_) {
    case Policy::fast:
    case Policy::deterministic:
    case Policy::portable:
      pick = default_choice(op, shape, candidates, choice.reason);
      break;
    case Policy::autotune:
      if (trial && candidates.size() > 1) {
        double best = 0;
        for (const Kernel* k : candidates) {
          trial(*k);  // warm-up: caches, pages, pool threads
          const auto t0 = std::chrono::steady_clock::now();
          trial(*k);
          const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
          choice.timings_us.push_back(us);
          if (!pick || us < best) pick = k, best = us;
        }
        choice.reason = "autotune";
      } else {
        pick = default_choice(op, shape, candidates, choice.reason);
      }
      break;
    case Policy::forced: {
      // The hooks choose. This machine's default stands ready for a site they leave alone (a replay whose
      // recorded kernel cannot run here).
      std::string fallback;
      pick = default_choice(op, shape, candidates, fallback);
      choice.reason = "forced";
      break;
    }
  }
  if (auto it = preferred_.find(site); it != preferred_.end() && policy_ != Policy::forced) {
    if (const Kernel* k = registry_->find(it->second.first); k && k->info.op == op) {
      pick = k;
      choice.reason = it->second.second;
      choice.timings_us.clear();
      if (std::find(choice.candidates.begin(), choice.candidates.end(), k->info.id) == choice.candidates.end())
        choice.candidates.push_back(k->info.id);
    }
  }
  if (pick) choice.chosen = pick->info.id;
  if (pick && pick->info.id.starts_with("f32_matmul__openblas")) {
    // OpenBLAS's bits depend on its version, core type and threads: the recorded reason carries them.
    openblas_use_threads(pool_->threads());
    choice.reason += " (" + openblas_description() + ")";
  }

  hooks_->kernel_selected(choice);

  if (choice.chosen.empty()) {
    if (policy_ == Policy::deterministic || policy_ == Policy::portable)
      throw KernelUnavailable(std::string("no ") + policy_name(policy_) + " kernel for op " + op_name(op) + " at " +
                              std::string(site));
    throw KernelUnavailable("no kernel selected for " + std::string(site) + " (policy " + policy_name(policy_) +
                            ")");
  }
  const Kernel* k = registry_->find(choice.chosen);
  if (!k) throw KernelUnavailable("kernel " + choice.chosen + " (at " + std::string(site) + ") is not available here");
  if (k->info.op != op)
    throw KernelUnavailable("kernel " + choice.chosen + " does not implement " + op_name(op) + " (at " +
                            std::string(site) + ")");
  if (k->info.isa > isa_)
    throw KernelUnavailable("kernel " + choice.chosen + " needs " + isa_name(k->info.isa) +
                            " but this run has " + isa_name(isa_));
  chosen_.emplace(std::string(site), k);
  return *k;
}

void run_matmul(KernelSelector& kernels, std::string_view site, const MatmulArgs& args) {
  const WorkShape shape{static_cast<double>(args.m) * args.n * args.k, args.m, args.n, args.k};
  const Kernel& k = kernels.select(site, OpKind::matmul, shape, [&](const Kernel& cand) {
    std::vector<float> scratch(args.c, args.c + args.m * args.n);
    MatmulArgs t = args;
    t.c = scratch.data();
    cand.matmul(t, kernels.pool());
  });
  k.matmul(args, kernels.pool());
}

void run_reduce(KernelSelector& kernels, std::string_view site, const ReduceArgs& args) {
  const WorkShape shape{static_cast<double>(args.rows) * args.cols, args.rows, args.cols, 0};
  const Kernel& k = kernels.select(site, OpKind::reduce, shape, [&](const Kernel& cand) {
    std::vector<float> scratch(args.cols);
    ReduceArgs t = args;
    t.out = scratch.data();
    t.order = nullptr;
    cand.reduce(t, kernels.pool());
  });
  if (k.info.deterministic) return k.reduce(args, kernels.pool());
  // Its completion order is a choice like any other: asked for (forcing), then reported.
  std::vector<uint32_t> order;
  kernels.hooks().accumulation_order(site, order);
  ReduceArgs a = args;
  a.order = &order;
  k.reduce(a, kernels.pool());
  kernels.hooks().accumulated(site, order);
}

void run_conv2d(KernelSelector& kernels, std::string_view site, OpKind op, const Conv2dArgs& args) {
  const double work = static_cast<double>(args.n) * args.out_h * args.out_w * args.kh * args.kw * args.c_in *
                      args.c_out;
  int64_t out_size = 0;
  switch (op) {
    case OpKind::conv2d_fwd: out_size = args.n * args.out_h * args.out_w * args.c_out; break;
    case OpKind::conv2d_bwd_data: out_size = args.n * args.h * args.w * args.c_in; break;
    default: out_size = args.kh * args.kw * args.c_in * args.c_out; break;
  }
  const Kernel& k = kernels.select(site, op, work, [&](const Kernel& cand) {
    std::vector<float> scratch(out_size);
    Conv2dArgs t = args;
    t.out = scratch.data();
    cand.conv(t, kernels.pool());
  });
  k.conv(args, kernels.pool());
}

}  // namespace trainrr
