#pragma once
// What every op of a running model reaches: hooks, kernels, threads and randomness.

#include "engine/hooks.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/random.h"
#include "engine/thread_pool.h"

namespace trainrr {

struct Runtime {
  Hooks* hooks = nullptr;           // never null; null_hooks() when nobody listens
  KernelSelector* kernels = nullptr;
  RngStreams* rng = nullptr;
  ThreadPool& pool() { return kernels->pool(); }
  // Probes wanted at this level? (Asked once per run, kept here.)
  ProbeLevel level = ProbeLevel::step;
  bool probes(ProbeLevel l) const { return level >= l; }
  void probe(std::string_view site, Phase phase, const Tensor& t, ProbeLevel l) {
    if (probes(l)) hooks->probe(site, phase, t);
  }
};

}  // namespace trainrr
