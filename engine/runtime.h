#pragma once
// What every op of a running model reaches: hooks, kernels, threads and randomness.

#include "engine/hooks.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/portable_math.h"
#include "engine/random.h"
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
