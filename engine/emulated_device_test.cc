// The engine's device path, checked without a GPU: a run on the emulated device (engine/emulated_device.h) must
// give the CPU run's every probe, kernel choice, draw, loss, parameter and gradient, bit for bit.

#include "engine/emulated_device.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/fingerprint.h"
#include "engine/trainer.h"

namespace trainrr {
namespace {

std::string example(const std::string& name) { return std::string(TRAINRR_SOURCE_DIR) + "/examples/" + name; }

std::string hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Everything a run shows its hooks, as lines.
class Observer : public Hooks {
 public:
  ProbeLevel probe_level() const override { return ProbeLevel::op; }
  void probe(std::string_view site, Phase phase, const Tensor& value) override {
    EXPECT_FALSE(value.on_device()) << site;
    EXPECT_EQ(static_cast<int64_t>(value.data.size()), shape_size(value.shape)) << site;
    log.push_back(std::string("probe ") + phase_name(phase) + " " + std::string(site) + " " + shape_str(value.shape) +
                  " " + hex(digest(value)));
  }
  void kernel_selected(KernelChoice& c) override { log.push_back("kernel " + c.site + " " + c.chosen); }
  void rng_values(const RngDraw& d, std::span<const std::byte> values) override {
    log.push_back("rng " + d.site + " " + d.stream + " " + std::to_string(d.counter) + "+" +
                  std::to_string(d.count) + " " + hex(digest_bytes(values.data(), values.size())));
  }
  void step_end(const StepSummary& s) override {
    char loss[64];
    std::snprintf(loss, sizeof loss, "%a", s.loss);
    std::string line = "step " + std::to_string(s.step) + " loss " + loss;
    for (const auto& [k, v] : s.metrics) line += " " + k + " " + std::to_string(v);
    log.push_back(line);
    for (const auto& [name, t] : s.params) log.push_back("  param " + name + " " + hex(digest(*t)));
    for (const auto& [name, t] : s.grads) log.push_back("  grad " + name + " " + hex(digest(*t)));
  }
  void epoch_end(const EpochSummary& e) override {
    std::string line = "epoch " + std::to_string(e.epoch);
    for (const auto& [k, v] : e.logs) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %s %a", k.c_str(), v);
      line += buf;
    }
    log.push_back(line);
  }
  std::vector<std::string> log;
};

struct Outcome {
  std::vector<std::string> log;
  std::vector<std::string> state;  // the final TrainState's tensors
  std::string evaluation;
  uint64_t prediction = 0;
};

Outcome run(const std::string& file, std::vector<std::string> overrides, DeviceBackend* device) {
  Outcome out;
  auto config = load_config(example(file), overrides);
  EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message);
  if (!config) return out;
  KernelRegistry registry;
  register_cpu_kernels(registry);
  Observer hooks;
  TrainingOptions options;
  options.registry = &registry;
  options.hooks = &hooks;
  options.device = device;
  auto t = Training::create(*config, options);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  if (!t) return out;
  Status s = (*t)->fit();
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  out.log = std::move(hooks.log);
  for (const NamedTensor& nt : (*t)->state().tensors) out.state.push_back(nt.name + " " + hex(digest(nt.value)));
  if ((*t)->has_test()) {
    const Evaluation e = (*t)->evaluate((*t)->test_data());
    char buf[128];
    std::snprintf(buf, sizeof buf, "loss %a accuracy %a rows %lld", e.loss, e.accuracy, static_cast<long long>(e.rows));
    out.evaluation = buf;
    Tensor x = (*t)->test_data().x;
    const Tensor p = (*t)->predict(x);
    EXPECT_FALSE(p.on_device());
    out.prediction = digest(p);
  }
  return out;
}

// The first line where the two logs part, for the failure message.
std::string first_difference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) return "line " + std::to_string(i) + ":\n  cpu:      " + a[i] + "\n  emulated: " + b[i];
  return "lengths " + std::to_string(a.size()) + " and " + std::to_string(b.size());
}

void expect_same_run(const std::string& file, const std::vector<std::string>& overrides) {
  SCOPED_TRACE(file);
  const Outcome cpu = run(file, overrides, nullptr);
  EmulatedDevice device;
  const Outcome emulated = run(file, overrides, &device);
  ASSERT_FALSE(cpu.log.empty());
  EXPECT_TRUE(cpu.log == emulated.log) << first_difference(cpu.log, emulated.log);
  EXPECT_EQ(cpu.state, emulated.state);
  EXPECT_EQ(cpu.evaluation, emulated.evaluation);
  EXPECT_EQ(cpu.prediction, emulated.prediction);
  EXPECT_GT(device.uploads(), 0u);
  EXPECT_GT(device.downloads(), 0u);
  // Every tensor of the run went with it.
  EXPECT_EQ(device.live_allocations(), 0u);
}

const std::vector<std::string> kDeterministic = {"runtime.policy=deterministic", "train.epochs=2"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(EmulatedDevice, DenseDropoutSoftmaxAdamIsTheCpuRun) { expect_same_run("digits_mlp.toml", kDeterministic); }

TEST(EmulatedDevice, ConvMaxPoolFlattenIsTheCpuRun) { expect_same_run("digits_cnn.toml", with(kDeterministic, {"train.epochs=1"})); }

TEST(EmulatedDevice, BatchNormalizationAndActivationAreTheCpuRun) {
  expect_same_run("digits_bn.toml", with(kDeterministic, {"train.epochs=1"}));
}

TEST(EmulatedDevice, BinaryCrossEntropyIsTheCpuRun) { expect_same_run("breast_cancer.toml", kDeterministic); }

TEST(EmulatedDevice, LossesFromLogitsAreTheCpuRun) {
  expect_same_run("breast_cancer.toml",
                  with(kDeterministic, {"model.layers[1].activation=linear", "train.from_logits=true"}));
  expect_same_run("digits_mlp.toml",
                  with(kDeterministic, {"model.layers[2].activation=linear", "train.from_logits=true"}));
  // Rows that are not distributions (sigmoid), scaled to sum to 1 as Keras does.
  expect_same_run("digits_mlp.toml", with(kDeterministic, {"model.layers[2].activation=sigmoid"}));
}

TEST(EmulatedDevice, MeanSquaredErrorIsTheCpuRun) {
  expect_same_run("breast_cancer.toml", with(kDeterministic, {"train.loss=mse"}));
}

TEST(EmulatedDevice, EveryOptimizerIsTheCpuRun) {
  for (const std::vector<std::string>& o : std::vector<std::vector<std::string>>{
           {"train.optimizer.type=sgd", "train.optimizer.learning_rate=0.05"},
           {"train.optimizer.type=sgd", "train.optimizer.momentum=0.9", "train.optimizer.nesterov=true"},
           {"train.optimizer.type=adamw", "train.optimizer.weight_decay=0.01"},
           {"train.optimizer.type=rmsprop"},
           {"train.optimizer.type=rmsprop", "train.optimizer.momentum=0.5", "train.optimizer.centered=true"}}) {
    SCOPED_TRACE(o.front() + (o.size() > 1 ? " " + o[1] : ""));
    expect_same_run("breast_cancer.toml", with(kDeterministic, o));
  }
}

TEST(EmulatedDevice, PortableMathIsTheCpuRun) {
  expect_same_run("digits_bn.toml", {"runtime.policy=portable", "train.epochs=1"});
}

// Keeps the state after step 5.
class Checkpointer : public Hooks {
 public:
  bool wants_checkpoint(int64_t steps) override { return steps == 5; }
  void checkpoint(const TrainState& s) override {
    for (const NamedTensor& t : s.tensors) EXPECT_FALSE(t.value.on_device()) << t.name;
    state = s;
  }
  TrainState state;
};

// A run resumed on the device from a checkpoint taken on the device ends where the CPU run ends: the
// parameters, moving statistics and optimizer slots went down into the checkpoint and back up.
TEST(EmulatedDevice, ResumingFromACheckpointEndsWhereTheCpuRunEnds) {
  auto config = load_config(example("digits_bn.toml"), {"runtime.policy=deterministic", "train.epochs=1"});
  ASSERT_TRUE(config.ok());
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions options;
  options.registry = &registry;
  auto cpu = Training::create(*config, options);
  ASSERT_TRUE(cpu.ok());
  ASSERT_TRUE((*cpu)->fit().ok());

  EmulatedDevice first;
  Checkpointer keep;
  options.device = &first;
  options.hooks = &keep;
  auto partial = Training::create(*config, options);
  ASSERT_TRUE(partial.ok());
  ASSERT_TRUE((*partial)->fit(7).ok());
  ASSERT_EQ(keep.state.step, 5);

  EmulatedDevice second;
  options.device = &second;
  options.hooks = nullptr;
  auto resumed = Training::create(*config, options);
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE((*resumed)->restore(keep.state).ok());
  ASSERT_TRUE((*resumed)->fit().ok());
  const TrainState want = (*cpu)->state(), got = (*resumed)->state();
  ASSERT_EQ(want.tensors.size(), got.tensors.size());
  for (size_t i = 0; i < want.tensors.size(); ++i) {
    EXPECT_EQ(want.tensors[i].name, got.tensors[i].name);
    EXPECT_EQ(digest(want.tensors[i].value), digest(got.tensors[i].value)) << want.tensors[i].name;
  }
}

// Sees each step's summary; reads its parameters and gradients or not.
class StepListener : public Hooks {
 public:
  explicit StepListener(bool reads) : reads_(reads) {}
  bool reads_step_tensors() const override { return reads_; }
  void step_end(const StepSummary& s) override {
    ++steps;
    summary_tensors += s.params.size() + s.grads.size();
    for (const auto& [name, t] : s.params) EXPECT_FALSE(t->on_device() && t->data.empty()) << name;
  }
  int64_t steps = 0;
  size_t summary_tensors = 0;

 private:
  bool reads_;
};

struct Quiet {
  std::vector<std::string> weights;  // Training::weights(), after the run
  size_t params = 0;                 // of the model
  std::vector<std::string> state;
  std::string evaluation;
  uint64_t downloads = 0;
};

Quiet run_quietly(const RunConfig& config, DeviceBackend* device, Hooks* hooks) {
  Quiet out;
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions options;
  options.registry = &registry;
  options.device = device;
  options.hooks = hooks;
  auto t = Training::create(config, options);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  if (!t) return out;
  EXPECT_TRUE((*t)->fit().ok());
  // Read before anything else reads the device: the weights must come from it, not from a stale host copy.
  for (const NamedTensor& nt : (*t)->weights()) out.weights.push_back(nt.name + " " + hex(digest(nt.value)));
  out.params = (*t)->model().params().size();
  for (const NamedTensor& nt : (*t)->state().tensors) out.state.push_back(nt.name + " " + hex(digest(nt.value)));
  const Evaluation e = (*t)->evaluate((*t)->test_data());
  out.evaluation = std::to_string(e.loss) + " " + std::to_string(e.accuracy);
  if (device) out.downloads = static_cast<EmulatedDevice*>(device)->downloads();
  return out;
}

// A run whose listeners do not read the step's parameters and gradients (a plain `train`, the benchmark) does
// not copy them to the host after each step, and still ends with the CPU run's weights, moving statistics and
// optimizer slots.
TEST(EmulatedDevice, ARunWhoseListenersReadNoStepTensorsCopiesNoneAndEndsAsTheCpuRun) {
  // Without listeners, not even the dropout masks' values are read back (Hooks::reads_drawn_values).
  for (const char* file : {"digits_mlp.toml", "digits_bn.toml"}) {
    SCOPED_TRACE(file);
    auto config = load_config(example(file), {"runtime.policy=deterministic", "train.epochs=1"});
    ASSERT_TRUE(config.ok());
    const Quiet cpu = run_quietly(*config, nullptr, nullptr);
    ASSERT_FALSE(cpu.weights.empty());
    EmulatedDevice unobserved;
    const Quiet none = run_quietly(*config, &unobserved, nullptr);
    EXPECT_EQ(cpu.weights, none.weights);
    EXPECT_EQ(cpu.state, none.state);
    EXPECT_EQ(cpu.evaluation, none.evaluation);
    EXPECT_EQ(unobserved.live_allocations(), 0u);
  }

  auto config = load_config(example("digits_bn.toml"), {"runtime.policy=deterministic", "train.epochs=1"});
  ASSERT_TRUE(config.ok());
  const Quiet cpu = run_quietly(*config, nullptr, nullptr);
  EmulatedDevice unobserved;
  const Quiet none = run_quietly(*config, &unobserved, nullptr);

  EmulatedDevice d_reads, d_skips;
  StepListener reads(true), skips(false);
  const Quiet with_tensors = run_quietly(*config, &d_reads, &reads);
  const Quiet without = run_quietly(*config, &d_skips, &skips);
  EXPECT_EQ(cpu.weights, with_tensors.weights);
  EXPECT_EQ(cpu.weights, without.weights);
  EXPECT_EQ(cpu.state, without.state);
  ASSERT_GT(reads.steps, 0);
  EXPECT_EQ(reads.steps, skips.steps);
  EXPECT_EQ(skips.summary_tensors, 0u);
  // Each step of the reading run copies every parameter and gradient, and the layers' state tensors (the
  // moving statistics), to the host: the other run copies none of them.
  const size_t params = cpu.params, tensors = cpu.weights.size();  // weights: parameters and state tensors
  ASSERT_GT(tensors, params);
  EXPECT_EQ(reads.summary_tensors, static_cast<size_t>(reads.steps) * 2 * params);
  EXPECT_EQ(with_tensors.downloads - without.downloads, static_cast<uint64_t>(reads.steps) * (params + tensors));
  EXPECT_EQ(none.downloads, without.downloads);
}

// A device without the portable family's exp, log and tanh (the CUDA device) refuses a portable run before it
// starts, naming both settings.
class NoPortableDevice : public EmulatedDevice {
 public:
  Status supports(MathFamily math) const override {
    if (math == MathFamily::portable) return Error{"no portable math here"};
    return {};
  }
};

TEST(EmulatedDevice, ADeviceWithoutPortableMathRefusesAPortableRunBeforeItStarts) {
  auto config = load_config(example("digits_mlp.toml"), {"runtime.policy=portable"});
  ASSERT_TRUE(config.ok());
  KernelRegistry registry;
  register_cpu_kernels(registry);
  NoPortableDevice device;
  TrainingOptions options;
  options.registry = &registry;
  options.device = &device;
  auto t = Training::create(*config, options);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("runtime.policy = \"portable\": no portable math here"), std::string::npos)
      << t.error().message;
  EXPECT_EQ(device.live_allocations(), 0u);
  config = load_config(example("digits_mlp.toml"), {"runtime.policy=deterministic", "train.epochs=1"});
  ASSERT_TRUE(config.ok());
  t = Training::create(*config, options);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE((*t)->fit().ok());
}

TEST(EmulatedDevice, AHostPointerGivenToAnOpIsAnError) {
  EmulatedDevice device;
  std::vector<float> host(8, 1.0f);
  Tensor t;
  device_reshape(device, t, {8});
  EXPECT_THROW(device.add_bias(host.data(), t.dptr(), 1, 8), DeviceError);
  EXPECT_THROW(device.add_bias(t.dptr(), host.data(), 1, 8), DeviceError);
  // One value past the allocation.
  EXPECT_THROW(device.scale(t.dptr() + 1, 8, 2.0f), DeviceError);
  device.upload(t.dptr(), host.data(), 8 * sizeof(float));
  device.scale(t.dptr(), 8, 2.0f);
  to_host(device, t);
  EXPECT_EQ(t.data, std::vector<float>(8, 2.0f));
}

TEST(EmulatedDevice, TensorCopiesAreDeepAndKeepTheirDevice) {
  EmulatedDevice device;
  Tensor a(Shape{4}, std::vector<float>{1, 2, 3, 4});
  to_device(device, a);
  Tensor b = a;
  ASSERT_TRUE(b.on_device());
  EXPECT_NE(b.dptr(), a.dptr());
  device.scale(a.dptr(), 4, 10.0f);
  to_host(device, b);
  EXPECT_EQ(b.data, (std::vector<float>{1, 2, 3, 4}));
  Tensor c;
  c = std::move(a);
  EXPECT_FALSE(a.on_device());
  EXPECT_EQ(c.size(), 4);
  to_host(device, c);
  EXPECT_EQ(c.data, (std::vector<float>{10, 20, 30, 40}));
  EXPECT_EQ(device.live_allocations(), 2u);
}

}  // namespace
}  // namespace trainrr
