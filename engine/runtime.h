#pragma once
// What every op of a running model reaches: hooks, kernels, threads and randomness.

#include "engine/hooks.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/portable_math.h"
#include "engine/random.h"
#include "engine/thread_pool.h"

namespace trainrr {

struct Runtime {
  Hooks* hooks = nullptr;           // never null; null_hooks() when nobody listens
  KernelSelector* kernels = nullptr;
  RngStreams* rng = nullptr;
  // exp, log and tanh of activations and losses, and the optimizers' powers: portable under
  // runtime.policy = "portable" (also when a replay forces the kernels), glibc's otherwise.
  MathFamily math = MathFamily::libm;
  ThreadPool& pool() { return kernels->pool(); }
  // Probes wanted at this level? (Asked once per run, kept here.)
  ProbeLevel level = ProbeLevel::step;
  bool probes(ProbeLevel l) const { return level >= l; }
  void probe(std::string_view site, Phase phase, const Tensor& t, ProbeLevel l) {
    last_probed_ = probes(l) ? &t : nullptr;
    if (last_probed_) hooks->probe(site, phase, t);
  }
  // A probe of `t` where the caller's previous probe call was of `t` too and nothing has written it since.
  // The hooks are told so when that previous call reached them.
  void probe_unchanged(std::string_view site, Phase phase, const Tensor& t, ProbeLevel l) {
    const bool again = last_probed_ == &t;
    last_probed_ = probes(l) ? &t : nullptr;
    if (!last_probed_) return;
    if (again)
      hooks->probe_unchanged(site, phase, t);
    else
      hooks->probe(site, phase, t);
  }

 private:
  const Tensor* last_probed_ = nullptr;  // the previous probe call's tensor, if it reached the hooks
};

}  // namespace trainrr
