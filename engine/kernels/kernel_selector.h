#pragma once
// Kernel selection: a short rule over declared properties, made once per site and reported through the
// hooks (which may replace it: forcing). Policies as in DESIGN.md.

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "engine/hooks.h"
#include "engine/kernels/kernel_registry.h"

namespace trainrr {

enum class Policy : uint8_t {
  fast,           // "default": the fast choice, nondeterministic kernels included, as frameworks do
  deterministic,  // only deterministic, thread-independent kernels and the ordered loader: the same bits with
                  // any thread count; an op without one is an error
  autotune,       // time each candidate on the first call, keep the fastest (like cuDNN benchmark mode)
  portable,       // deterministic, and the same bits on every x86-64 CPU: only portable kernels (no FMA, no
                  // OpenBLAS, one order for every instruction set), and the layers' portable exp/log/tanh
  forced,         // every selection comes from the hooks (the replayer's)
};
const char* policy_name(Policy p);  // "default", "deterministic", "autotune", "portable", "forced"
Result<Policy> parse_policy(std::string_view name);

// A selection the user can act on failed: no deterministic kernel for an op, or a forced id unknown here.
class KernelUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The sizes the default rule reads. matmul: m, n, k; reduce: rows in m, columns in n; every op: `work`
// (multiply-adds, or elements for a reduction). Sizes left at 0 are unknown to the rule.
struct WorkShape {
  double work = 0;
  int64_t m = 0, n = 0, k = 0;
};

class KernelSelector {
 public:
  KernelSelector(const KernelRegistry& registry, Policy policy, Isa isa, ThreadPool& pool, Hooks& hooks);

  // The kernel at `site`: selected on first use, then kept. `work` sizes the op for the default rule
  // (multiply-adds, or elements for a reduction); `trial` runs one candidate once on the real arguments
  // (autotune) and may be empty where timing is not possible. Throws KernelUnavailable.
  const Kernel& select(std::string_view site, OpKind op, double work,
                       const std::function<void(const Kernel&)>& trial = {});
  // The same, with the sizes the default rule can use (run_matmul and run_reduce pass them).
  const Kernel& select(std::string_view site, OpKind op, const WorkShape& shape,
                       const std::function<void(const Kernel&)>& trial = {});

  Policy policy() const { return policy_; }
  Isa isa() const { return isa_; }
  ThreadPool& pool() { return *pool_; }
  Hooks& hooks() { return *hooks_; }
  const KernelRegistry& registry() const { return *registry_; }
  // The kernel `id` at `site` whatever the policy says (a configuration that names it), except under the
  // forced policy, where the hooks decide.
  void prefer(std::string site, std::string id, std::string why) { preferred_[std::move(site)] = {std::move(id), std::move(why)}; }
  // Forgets every selection (a fresh run in the same process).
  void reset() { chosen_.clear(); }

 private:
  const Kernel* default_choice(OpKind op, const WorkShape& shape, const std::vector<const Kernel*>& candidates,
                               std::string& reason) const;

  const KernelRegistry* registry_;
  Policy policy_;
  Isa isa_;
  ThreadPool* pool_;
  Hooks* hooks_;
  std::map<std::string, const Kernel*, std::less<>> chosen_;
  std::map<std::string, std::pair<std::string, std::string>, std::less<>> preferred_;
};

// What ops call: select at the site, then run.
void run_matmul(KernelSelector& kernels, std::string_view site, const MatmulArgs& args);
void run_reduce(KernelSelector& kernels, std::string_view site, const ReduceArgs& args);
void run_conv2d(KernelSelector& kernels, std::string_view site, OpKind op, const Conv2dArgs& args);

}  // namespace trainrr
