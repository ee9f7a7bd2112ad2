#pragma once
// What the CUDA device's GPU tests share (cuda/engine_device_test.cc, cuda/engine_conv_test.cc): the device,
// arrays in its memory, a runtime with a chosen policy, and hooks that record (and may force) choices.

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <vector>

#include "cuda/engine_device.h"
#include "engine/hooks.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/layers/layer_test_util.h"
#include "engine/random.h"
#include "engine/runtime.h"
#include "engine/thread_pool.h"

namespace trainrr::cuda_testing {

inline std::unique_ptr<cuda::CudaDevice> open_device() {
  auto d = cuda::CudaDevice::open(0);
  if (!d) {
    ADD_FAILURE() << d.error().message;
    return nullptr;
  }
  return std::move(*d);
}

// Floats in the device's memory, filled from the host and read back through the device's own calls.
class Floats {
 public:
  Floats(cuda::CudaDevice& d, size_t n) : d_(d), n_(n) { array_.resize(d, n * sizeof(float)); }
  Floats(cuda::CudaDevice& d, const std::vector<float>& host) : Floats(d, host.size()) {
    d.upload(array_.get(), host.data(), host.size() * sizeof(float));
  }
  float* get() { return static_cast<float*>(array_.get()); }
  std::vector<float> host() {
    std::vector<float> out(n_);
    d_.download(out.data(), array_.get(), n_ * sizeof(float));
    return out;
  }

 private:
  cuda::CudaDevice& d_;
  size_t n_;
  DeviceArray array_;
};

class ChoiceHooks : public Hooks {
 public:
  std::vector<KernelChoice> choices;
  std::function<void(KernelChoice&)> force;  // under the forced policy: what a replay would do
  void kernel_selected(KernelChoice& c) override {
    if (force) force(c);
    choices.push_back(c);
  }
};

struct SiteRuntime {
  SiteRuntime(Policy policy, Hooks& hooks)
      : registry(testing::TestRuntime::filled()), pool(1), kernels(registry, policy, Isa::generic, pool, hooks),
        rng(1, hooks) {
    rt.hooks = &hooks;
    rt.kernels = &kernels;
    rt.rng = &rng;
  }
  KernelRegistry registry;
  ThreadPool pool;
  KernelSelector kernels;
  RngStreams rng;
  Runtime rt;
};

}  // namespace trainrr::cuda_testing
