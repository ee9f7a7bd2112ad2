#include "engine/kernels/kernel_selector.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "engine/thread_pool.h"

namespace trainrr {

const char* policy_name(Policy p) {
  switch (p) {
    case Policy::fast: return "default";
    case Policy::deterministic: return "deterministic";
    case Policy::autotune: return "autotune";
    case Policy::forced: return "forced";
  }
  return "?";
}

Result<Policy> parse_policy(std::string_view name) {
  if (name == "default") return Policy::fast;
  if (name == "deterministic") return Policy::deterministic;
  if (name == "autotune") return Policy::autotune;
  if (name == "forced") return Policy::forced;
  return Error{"unknown policy '" + std::string(name) + "' (expected default, deterministic or autotune)"};
}

KernelSelector::KernelSelector(const KernelRegistry& registry, Policy policy, Isa isa, ThreadPool& pool,
                               Hooks& hooks)
    : registry_(&registry), policy_(policy), isa_(isa), pool_(&pool), hooks_(&hooks) {}

const Kernel* KernelSelector::default_choice(OpKind op, double work,
                                             const std::vector<const Kernel*>& candidates,
                                             std::string& reason) const {
  (void)op, (void)work;
  // The last registered candidate is the most specialised; the default rule prefers it.
  reason = "default";
  return candidates.empty() ? nullptr : candidates.back();
}

const Kernel& KernelSelector::select(std::string_view site, OpKind op, double work,
                                     const std::function<void(const Kernel&)>& trial) {
  if (auto it = chosen_.find(site); it != chosen_.end()) return *it->second;

  std::vector<const Kernel*> candidates = registry_->candidates(op, isa_);
  if (policy_ == Policy::deterministic)
    std::erase_if(candidates, [](const Kernel* k) { return !k->info.deterministic; });

  KernelChoice choice;
  choice.site = std::string(site);
  choice.op = op_name(op);
  for (const Kernel* k : candidates) choice.candidates.push_back(k->info.id);

  const Kernel* pick = nullptr;
  switch (policy_) {
    case Policy::fast:
      pick = default_choice(op, work, candidates, choice.reason);
      break;
    case Policy::deterministic:
      pick = default_choice(op, work, candidates, choice.reason);
      choice.reason = "deterministic";
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
        pick = default_choice(op, work, candidates, choice.reason);
      }
      break;
    case Policy::forced:
      choice.reason = "forced";
      break;
  }
  if (pick) choice.chosen = pick->info.id;

  hooks_->kernel_selected(choice);

  if (choice.chosen.empty()) {
    if (policy_ == Policy::deterministic)
      throw KernelUnavailable(std::string("no deterministic kernel for op ") + op_name(op) + " at " +
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
  const double work = static_cast<double>(args.m) * args.n * args.k;
  const Kernel& k = kernels.select(site, OpKind::matmul, work, [&](const Kernel& cand) {
    std::vector<float> scratch(args.c, args.c + args.m * args.n);
    MatmulArgs t = args;
    t.c = scratch.data();
    cand.matmul(t, kernels.pool());
  });
  k.matmul(args, kernels.pool());
}

void run_reduce(KernelSelector& kernels, std::string_view site, const ReduceArgs& args) {
  const double work = static_cast<double>(args.rows) * args.cols;
  const Kernel& k = kernels.select(site, OpKind::reduce, work, [&](const Kernel& cand) {
    std::vector<float> scratch(args.cols);
    ReduceArgs t = args;
    t.out = scratch.data();
    cand.reduce(t, kernels.pool());
  });
  k.reduce(args, kernels.pool());
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
