#pragma once
// What the layer, loss and gradient tests share: a runtime on the reference kernels, seeded test data,
// a hook that records what it sees, and a central-difference gradient check.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/layers/layer.h"
#include "engine/random.h"
#include "engine/runtime.h"
#include "engine/thread_pool.h"

namespace trainrr::testing {

// A runtime as the engine builds one: CPU kernels, deterministic selection, one thread.
struct TestRuntime {
  explicit TestRuntime(uint64_t seed = 1, Hooks& hooks = null_hooks(), ProbeLevel level = ProbeLevel::step)
      : registry(filled()),
        pool(1),
        kernels(registry, Policy::deterministic, Isa::generic, pool, hooks),
        rng(seed, hooks) {
    rt.hooks = &hooks;
    rt.kernels = &kernels;
    rt.rng = &rng;
    rt.level = level;
  }
  static KernelRegistry filled() {
    KernelRegistry r;
    register_cpu_kernels(r);
    return r;
  }

  KernelRegistry registry;
  ThreadPool pool;
  KernelSelector kernels;
  RngStreams rng;
  Runtime rt;
};

// Uniform values in [lo, hi) from Philox with key `seed`: the same on every platform.
inline Tensor random_tensor(Shape shape, uint64_t seed, float lo = -1, float hi = 1) {
  Tensor t(std::move(shape));
  std::vector<uint32_t> w(t.size());
  philox_words(seed, 0, w);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = lo + (hi - lo) * uniform01(w[i]);
  return t;
}

// Records kernel sites, probe sites and RNG draws, and asks for every probe.
class RecordingHooks : public Hooks {
 public:
  void kernel_selected(KernelChoice& c) override { kernel_sites.push_back(c.site); }
  ProbeLevel probe_level() const override { return ProbeLevel::op; }
  void probe(std::string_view site, Phase phase, const Tensor&) override {
    probe_sites.push_back(std::string(site) + (phase == Phase::forward ? " F" : " B"));
  }
  void rng_draw(RngDraw& d) override { draws.push_back(d); }

  std::vector<std::string> kernel_sites;
  std::vector<std::string> probe_sites;  // "<site> F" or "<site> B"
  std::vector<RngDraw> draws;
};

struct GradCheck {
  // Float32 layers, so the step cannot be tiny: 1e-3 keeps rounding noise (~1e-7 * |f| / 1e-3) near 1e-4
  // while the O(h^2) truncation error stays below it for the smooth ops used here.
  float step = 1e-3f;
  // |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|), element by element.
  double rtol = 2e-2;
  double atol = 2e-3;
  int max_checks = 48;  // elements checked per tensor, spread evenly
  bool training = true;
};

namespace detail {
inline std::vector<int64_t> check_indices(int64_t n, int max_checks) {
  std::vector<int64_t> idx;
  if (n <= max_checks) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    // A stride coprime to most sizes, so the sample covers every position of small inner dimensions.
    for (int64_t i = 0; i < max_checks; ++i) idx.push_back((i * 7919) % n);
  }
  return idx;
}

inline void compare(const char* what, int64_t i, double numeric, double analytic, const GradCheck& opt) {
  const double tol = opt.atol + opt.rtol * std::max(std::abs(numeric), std::abs(analytic));
  EXPECT_NEAR(numeric, analytic, tol) << what << "[" << i << "]";
}
}  // namespace detail

// Checks the gradients of s(x) = sum_i w_i * layer(x)_i, with w a fixed random tensor, with respect to the
// input and every parameter, against central differences. RNG positions are restored before every forward,
// so dropout sees the same mask each time.
inline void expect_layer_gradients(Layer& layer, Tensor x, TestRuntime& t, const GradCheck& opt = {}) {
  const auto offsets = t.rng.offsets();
  const Tensor y = layer.forward(x, t.rt, opt.training);
  const Tensor w = random_tensor(y.shape, 4242);
  const Tensor dx = layer.backward(w, t.rt);
  ASSERT_EQ(dx.shape, x.shape);
  std::vector<Tensor> grads;
  for (Param* p : layer.params()) grads.push_back(p->grad);

  auto objective = [&] {
    t.rng.restore(offsets);
    const Tensor out = layer.forward(x, t.rt, opt.training);
    double s = 0;
    for (int64_t i = 0; i < out.size(); ++i) s += static_cast<double>(w[i]) * out[i];
    return s;
  };
  auto numeric = [&](float& v) {
    const float saved = v;
    v = saved + opt.step;
    const double fp = objective();
    v = saved - opt.step;
    const double fm = objective();
    v = saved;
    return (fp - fm) / (2.0 * opt.step);
  };

  for (int64_t i : detail::check_indices(x.size(), opt.max_checks))
    detail::compare("dx", i, numeric(x[i]), dx[i], opt);
  std::vector<Param*> params = layer.params();
  for (size_t p = 0; p < params.size(); ++p)
    for (int64_t i : detail::check_indices(params[p]->value.size(), opt.max_checks))
      detail::compare(params[p]->name.c_str(), i, numeric(params[p]->value[i]), grads[p][i], opt);
}

}  // namespace trainrr::testing
