#include "engine/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace trainrr {
namespace {

struct Env {
  KernelRegistry registry;
  ThreadPool pool{2};
  std::unique_ptr<KernelSelector> selector;
  RngStreams rng{1, null_hooks()};
  Runtime rt;
  Env() {
    register_cpu_kernels(registry);
    selector = std::make_unique<KernelSelector>(registry, Policy::deterministic, Isa::generic, pool, null_hooks());
    rt.hooks = &null_hooks();
    rt.kernels = selector.get();
    rt.rng = &rng;
  }
};

// Runs `steps` updates of one scalar parameter with a fixed gradient sequence; returns its values.
std::vector<double> run(const OptimizerConfig& c, const std::vector<float>& grads) {
  Env env;
  auto opt = make_optimizer(c);
  Param p{"w", Tensor({1}, 1.0f), Tensor({1}, 0.0f)};
  std::vector<double> out;
  for (float g : grads) {
    p.grad[0] = g;
    opt->step({&p}, env.rt);
    out.push_back(p.value[0]);
  }
  return out;
}

const std::vector<float> kGrads = {0.5f, -0.25f, 1.0f};

TEST(Optimizer, AdamFollowsKerasRule) {
  OptimizerConfig c;
  c.type = "adam";
  c.learning_rate = 0.01;
  std::vector<double> got = run(c, kGrads);
  double w = 1, m = 0, v = 0;
  for (size_t t = 1; t <= kGrads.size(); ++t) {
    const double g = kGrads[t - 1];
    m += (g - m) * (1 - 0.9);
    v += (g * g - v) * (1 - 0.999);
    const double lr_t = 0.01 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    w -= lr_t * m / (std::sqrt(v) + 1e-7);
    EXPECT_NEAR(got[t - 1], w, 1e-6) << "step " << t;
  }
}

TEST(Optimizer, AdamWDecaysWeightsFirst) {
  OptimizerConfig c;
  c.type = "adamw";
  c.learning_rate = 0.01;
  c.weight_decay = 0.1;
  std::vector<double> got = run(c, {0.5f});
  // w = 1 - 1 * 0.1 * 0.01, then Adam's first step moves it by lr * sign(g) (almost exactly).
  EXPECT_NEAR(got[0], 1 - 0.001 - 0.01, 1e-6);
}

TEST(Optimizer, SgdMomentumAndNesterov) {
  OptimizerConfig c;
  c.type = "sgd";
  c.learning_rate = 0.1;
  c.momentum = 0.9;
  std::vector<double> got = run(c, kGrads);
  c.nesterov = true;
  std::vector<double> nest = run(c, kGrads);
  double w = 1, m = 0, wn = 1, mn = 0;
  for (size_t t = 0; t < kGrads.size(); ++t) {
    m = 0.9 * m - 0.1 * kGrads[t];
    w += m;
    mn = 0.9 * mn - 0.1 * kGrads[t];
    wn += 0.9 * mn - 0.1 * kGrads[t];
    EXPECT_NEAR(got[t], w, 1e-6);
    EXPECT_NEAR(nest[t], wn, 1e-6);
  }
  c.momentum = 0;
  c.nesterov = false;
  EXPECT_NEAR(run(c, {0.5f})[0], 0.95, 1e-7);
}

TEST(Optimizer, RmsPropFollowsKerasRule) {
  OptimizerConfig c;
  c.type = "rmsprop";
  c.learning_rate = 0.01;
  std::vector<double> got = run(c, kGrads);
  double w = 1, v = 0;
  for (size_t t = 0; t < kGrads.size(); ++t) {
    v = 0.9 * v + 0.1 * kGrads[t] * kGrads[t];
    w -= 0.01 * kGrads[t] / std::sqrt(v + 1e-7);
    EXPECT_NEAR(got[t], w, 1e-5);
  }
}

// Keras 3's RMSprop.update_step evaluated in float64 (Python) from w = 1, learning rate 0.01, rho 0.9,
// epsilon 1e-7. The small gradients make epsilon count: Keras adds it under the square root (PyTorch's
// centered RMSprop adds it outside, and would give 0.96668, 0.97894, 0.97773 there).
TEST(Optimizer, RmsPropCenteredAndMomentumFollowKerasRule) {
  struct Case {
    double momentum;
    bool centered;
    std::vector<float> grads;
    std::vector<double> want;
  };
  for (const Case& k : std::vector<Case>{
           {0.0, false, kGrads, {0.9683772866436797, 0.983121456617157, 0.9549356748047833}},
           {0.0, true, kGrads, {0.9666667407404939, 0.981514561326797, 0.9516273208897943}},
           {0.5, false, kGrads, {0.9683772866436797, 0.9673100999389969, 0.9385907247742816}},
           {0.5, true, kGrads, {0.9666667407404939, 0.9648479316970439, 0.9340512867383161}},
           {0.5, true, {1e-3f, -2e-3f, 5e-4f}, {0.9770584266129438, 0.9918965979675168, 0.9926555200431213}},
       }) {
    OptimizerConfig c;
    c.type = "rmsprop";
    c.learning_rate = 0.01;
    c.momentum = k.momentum;
    c.centered = k.centered;
    const std::vector<double> got = run(c, k.grads);
    for (size_t t = 0; t < k.grads.size(); ++t)
      EXPECT_NEAR(got[t], k.want[t], 5e-7)
          << "momentum " << k.momentum << ", centered " << k.centered << ", step " << t + 1;
  }
}

TEST(Optimizer, RmsPropSlotsHaveKerasNames) {
  Env env;
  OptimizerConfig c;
  c.type = "rmsprop";
  c.momentum = 0.9;
  c.centered = true;
  auto opt = make_optimizer(c);
  Param p{"w", Tensor({2}, 1.0f), Tensor({2}, 0.5f)};
  opt->step({&p}, env.rt);
  std::vector<std::string> names;
  for (const NamedTensor& t : opt->state()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"velocity/w", "momentum/w", "average_gradient/w"}));
}

// An optimizer restored from another's state continues bit for bit, whatever slots it keeps.
TEST(Optimizer, StateRestoresExactly) {
  OptimizerConfig adam;
  adam.type = "adam";
  OptimizerConfig rmsprop;
  rmsprop.type = "rmsprop";
  rmsprop.momentum = 0.9;
  rmsprop.centered = true;
  OptimizerConfig sgd;
  sgd.type = "sgd";
  sgd.momentum = 0.9;
  for (const OptimizerConfig& c : {adam, rmsprop, sgd}) {
    Env env;
    auto a = make_optimizer(c), b = make_optimizer(c), fresh = make_optimizer(c);
    Param pa{"w", Tensor({3}, 1.0f), Tensor({3}, 0.3f)};
    a->step({&pa}, env.rt);
    pa.grad = Tensor({3}, -0.7f);
    a->step({&pa}, env.rt);
    ASSERT_TRUE(b->restore(a->state(), a->iterations()).ok()) << c.type;
    pa.grad = Tensor({3}, 0.2f);
    Param pb = pa, pf = pa;
    a->step({&pa}, env.rt);
    b->step({&pb}, env.rt);
    fresh->step({&pf}, env.rt);
    EXPECT_EQ(pa.value.data, pb.value.data) << c.type;
    EXPECT_NE(pa.value.data, pf.value.data) << c.type << ": without the state the step differs";
    EXPECT_FALSE(b->restore({{"bogus/w", Tensor({3})}}, 1).ok());
  }
}

}  // namespace
}  // namespace trainrr
