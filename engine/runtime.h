#pragma once
// What every op of a running model reaches: hooks, kernels, threads and randomness.

#include "engine/hooks.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/portable_math.h"
#include "engine/random.h"
#include "engine/result.h"
#include "engine/thread_pool.h"

namespace trainrr {

class DeviceBackend;  // engine/device_backend.h

struct Runtime {
  Hooks* hooks = nullptr;           // never null; null_hooks() when nobody listens
  KernelSelector* kernels = nullptr;
  RngStreams* rng = nullptr;
  // exp, log and tanh of activations and losses, and the optimizers' powers: portable under
  // runtime.policy = "portable" (also when a replay forces the kernels), glibc's otherwise.
  MathFamily math = MathFamily::libm;
  // The device a run trains on (engine/device_backend.h); null on the CPU. On a device the layers keep their
  // tensors' values in device memory, and a probe reaching the hooks shows them a host copy.
  DeviceBackend* device = nullptr;
  // runtime.tf32: a GPU's matmuls in TF32 (a recorded part of each matmul's choice).
  bool tf32 = false;
  // Values the layers' parameters may take in all, claimed by each layer before it allocates them (-1: any
  // number). A replay bounds it by the recorded model: a configuration inside a trace someone else wrote is
  // not to size a model of gigabytes.
  int64_t param_budget = -1;
  // The product of `dims` (a parameter's values), or -1 where it overflows.
  static int64_t values_of(std::initializer_list<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims)
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
    return n;
  }
  // Claims `values` of the budget for `layer`'s parameters (an overflowing product is passed as -1).
  Status claim_params(const std::string& layer, int64_t values) {
    if (param_budget < 0) return {};
    if (values < 0 || values > param_budget) {
      over_budget = true;
      return Error{
          layer + ": its parameters (" +
          (values < 0 ? std::string("more than 2^63") : std::to_string(values)) +
          " values) are more than this replay takes (" + std::to_string(param_budget) +
          " values left of the budget the recorded model sets: 16 times its parameters, at least 2^24): the "
          "configuration in the trace makes a model far larger than the one its initial state holds"};
    }
    param_budget -= values;
    return {};
  }
  bool over_budget = false;  // a claim_params was refused
  ThreadPool& pool() { return kernels->pool(); }
  // Probes wanted at this level? (Asked once per run, kept here.)
  ProbeLevel level = ProbeLevel::step;
  bool probes(ProbeLevel l) const { return level >= l; }
  // Every op ends with a probe call (whether or not the level asks for the probe): it tells the hooks the op
  // is done (Hooks::op_done) first. An op without a probe of its own calls op_done.
  void op_done(std::string_view site) { hooks->op_done(site); }
  void probe(std::string_view site, Phase phase, const Tensor& t, ProbeLevel l) {
    hooks->op_done(site);
    last_probed_ = probes(l) ? &t : nullptr;
    if (last_probed_) hooks->probe(site, phase, host_view(t));
  }
  // A probe of `t` where the caller's previous probe call was of `t` too and nothing has written it since.
  // The hooks are told so when that previous call reached them.
  void probe_unchanged(std::string_view site, Phase phase, const Tensor& t, ProbeLevel l) {
    hooks->op_done(site);
    const bool again = last_probed_ == &t;
    last_probed_ = probes(l) ? &t : nullptr;
    if (!last_probed_) return;
    if (again)
      hooks->probe_unchanged(site, phase, t.on_device() ? staging_ : t);
    else
      hooks->probe(site, phase, host_view(t));
  }

 private:
  // t itself on the CPU; on a device, a host copy of its values (staging_, valid until the next probe).
  const Tensor& host_view(const Tensor& t) {
    if (!t.on_device()) return t;
    stage(t);
    return staging_;
  }
  void stage(const Tensor& t);  // engine/device_backend.cc
  Tensor staging_;
  const Tensor* last_probed_ = nullptr;  // the previous probe call's tensor, if it reached the hooks
};

}  // namespace trainrr
