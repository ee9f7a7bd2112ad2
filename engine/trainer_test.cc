#include "engine/trainer.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "engine/emulated_device.h"
#include "engine/kernels/kernel_registry.h"

namespace trainrr {
namespace {

LayerSpec layer(const std::string& type, const std::string& activation = "linear") {
  LayerSpec s;
  s.type = type;
  s.activation = activation;
  return s;
}

TEST(EndsInSoftmax, OnlyASoftmaxThatIsTheLastLayerOverOneAxis) {
  EXPECT_TRUE(ends_in_softmax({layer("Dense", "relu"), layer("Dense", "softmax")}, {10}));
  EXPECT_TRUE(ends_in_softmax({layer("Dense"), layer("Activation", "softmax")}, {10}));
  // Dropout scales what the softmax gave during training: the rows no longer sum to 1.
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "softmax"), layer("Dropout")}, {10}));
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "sigmoid")}, {10}));
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "relu")}, {10}));
  // A softmax over the channels of an image sums to 1 per pixel, not over the sample.
  EXPECT_FALSE(ends_in_softmax({layer("Conv2D", "softmax")}, {4, 4, 3}));
  EXPECT_FALSE(ends_in_softmax({layer("Dense", "softmax")}, {4, 3}));
}

// --- checkpoints: what a restore takes ---

std::string example(const std::string& name);

// The breast-cancer example under the deterministic policy, set up to train (with the registry and hooks it
// runs with).
struct BreastCancerRun {
  KernelRegistry registry;
  Hooks hooks;
  std::unique_ptr<Training> training;
};
std::unique_ptr<BreastCancerRun> breast_cancer_run() {
  auto config = load_config(example("breast_cancer.toml"), {"runtime.policy=deterministic"});
  EXPECT_TRUE(config.ok()) << config.error().message;
  if (!config) return nullptr;
  auto run = std::make_unique<BreastCancerRun>();
  register_cpu_kernels(run->registry);
  TrainingOptions options;
  options.registry = &run->registry;
  options.hooks = &run->hooks;
  auto t = Training::create(*config, options);
  EXPECT_TRUE(t.ok()) << t.error().message;
  if (!t) return nullptr;
  run->training = std::move(t).value();
  return run;
}

// The rows a run trains on, counted from its data and configuration alone (what a recorded shuffle's length
// is held to before anything is made of it), are the rows it trains on: after the test split and the
// validation split.
TEST(Training, TrainingRowsCountsTheRowsTheRunTrainsOn) {
  for (const std::vector<std::string>& sets :
       {std::vector<std::string>{},
        {"train.validation_split=0.3"},
        {"data.test_fraction=0.55"},
        {"data.test_fraction=0.1", "train.validation_split=0.25", "data.split=sklearn"}}) {
    auto config = load_config(example("breast_cancer.toml"), sets);
    ASSERT_TRUE(config.ok()) << config.error().message;
    KernelRegistry registry;
    register_cpu_kernels(registry);
    Hooks hooks;
    TrainingOptions options;
    options.registry = &registry;
    options.hooks = &hooks;
    auto t = Training::create(*config, options);
    ASSERT_TRUE(t.ok()) << t.error().message;
    auto data = load_dataset(config->data, 0, config->file);
    ASSERT_TRUE(data.ok()) << data.error().message;
    EXPECT_EQ(training_rows(*config, data->rows()), (*t)->train_data().rows())
        << ::testing::PrintToString(sets);
  }
  auto config = load_config(example("breast_cancer.toml"), {});
  ASSERT_TRUE(config.ok());
  config->data.split = "no such split";
  EXPECT_EQ(training_rows(*config, 569), std::nullopt);
}

// The optimizer updates each slot elementwise beside its parameter: a restored slot of another shape is
// refused, not read and written past its end. state_shapes() names every tensor a checkpoint may hold.
TEST(Training, ARestoredOptimizerSlotMustHaveItsParametersShape) {
  auto run = breast_cancer_run();
  ASSERT_TRUE(run);
  Training* t = run->training.get();
  ASSERT_TRUE(t->fit(2).ok());
  const std::map<std::string, Shape> shapes = t->state_shapes();
  EXPECT_EQ(shapes.at("dense_1.kernel"), (Shape{30, 16}));
  EXPECT_EQ(shapes.at("m/dense_1.kernel"), (Shape{30, 16}));
  EXPECT_EQ(shapes.at("v/dense_2.bias"), (Shape{1}));
  TrainState state = t->state();
  for (const NamedTensor& nt : state.tensors) EXPECT_EQ(shapes.at(nt.name), nt.value.shape) << nt.name;
  EXPECT_TRUE(t->restore(state).ok());
  for (NamedTensor& nt : state.tensors)
    if (nt.name == "m/dense_1.kernel") nt.value = Tensor({1}, 0.0f);
  Status s = t->restore(state);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "optimizer state 'm/dense_1.kernel' has shape (1,), its parameter (30, 16)");
}

// A checkpoint's scalars come from a trace: one that is not a whole number where a count is meant (nan,
// 1e300, 2.5), negative, or larger than the checkpoint's step or epoch allow is refused, naming the scalar
// and the step, before anything is restored (converting 1e300 or nan to an integer is undefined).
TEST(Training, ARestoredCheckpointsScalarsMustBeCountsItsStepAndEpochAllow) {
  auto run = breast_cancer_run();
  ASSERT_TRUE(run);
  Training* t = run->training.get();
  ASSERT_TRUE(t->fit(3).ok());
  const TrainState good = t->state();
  ASSERT_FALSE(good.permutation.empty());
  const int64_t rows = static_cast<int64_t>(good.permutation.size());
  double done = -1;
  for (const auto& [k, v] : good.scalars)
    if (k == "epoch.rows") done = v;
  ASSERT_EQ(done, 3 * 32);  // three batches of 32
  ASSERT_TRUE(t->restore(good).ok());
  auto with = [&](const std::string& name, double v) {
    TrainState s = good;
    bool found = false;
    for (auto& [k, value] : s.scalars)
      if (k == name) value = v, found = true;
    EXPECT_TRUE(found) << name;
    return s;
  };
  const std::string damaged = ": the checkpoint was changed after it was taken (it is damaged)";
  const std::string iterations = "checkpoint at step 3: its scalar optimizer.iterations = ";
  const std::string not_count = " is not a whole number from 0 to 3 (its step)" + damaged;
  const std::string rows_what = " is not a whole number from 0 to " + std::to_string(rows) +
                                " (the labels of the rows its epoch's permutation orders)" + damaged;
  const std::vector<std::pair<TrainState, std::string>> cases = {
      {with("optimizer.iterations", NAN), iterations + "nan" + not_count},
      {with("optimizer.iterations", -NAN), iterations + "nan" + not_count},
      {with("optimizer.iterations", 1e300), iterations + "1.0000000000000001e+300" + not_count},
      {with("optimizer.iterations", INFINITY), iterations + "inf" + not_count},
      {with("optimizer.iterations", 2.5), iterations + "2.5" + not_count},
      {with("optimizer.iterations", -1), iterations + "-1" + not_count},
      {with("optimizer.iterations", 4), iterations + "4" + not_count},
      {with("epoch.rows", 1e19), "checkpoint at step 3: its scalar epoch.rows = 1e+19" + rows_what},
      {with("epoch.rows", static_cast<double>(rows + 1)),
       "checkpoint at step 3: its scalar epoch.rows = " + std::to_string(rows + 1) + rows_what},
      {with("epoch.correct", -INFINITY),
       "checkpoint at step 3: its scalar epoch.correct = -inf is not a whole number from 0 to 96 (its "
       "epoch.rows)" +
           damaged},
      {with("epoch.correct", 97),
       "checkpoint at step 3: its scalar epoch.correct = 97 is not a whole number from 0 to 96 (its "
       "epoch.rows)" +
           damaged},
      {with("epoch.loss_sum", -5),
       "checkpoint at step 3: its scalar epoch.loss_sum = -5 is negative, where no loss is" + damaged},
      {with("epoch.loss_sum", -INFINITY),
       "checkpoint at step 3: its scalar epoch.loss_sum = -inf is negative, where no loss is" + damaged},
  };
  for (const auto& [state, message] : cases) {
    Status s = t->restore(state);
    ASSERT_FALSE(s.ok()) << message;
    EXPECT_EQ(s.error().message, message);
  }
  // A diverged run's loss sum is nan or infinite: its checkpoint is restored.
  for (double v : {static_cast<double>(NAN), static_cast<double>(INFINITY), 0.0})
    EXPECT_TRUE(t->restore(with("epoch.loss_sum", v)).ok()) << v;
  EXPECT_TRUE(t->restore(with("optimizer.iterations", 0)).ok());
  // The state restored is the one checked: three updates, three batches.
  ASSERT_TRUE(t->restore(good).ok());
  TrainState again = t->state();
  EXPECT_EQ(again.scalars, good.scalars);
}

// --- op_done: every op of a step says it is done, whatever the probe level and wherever it runs ---

std::string example(const std::string& name) { return std::string(TRAINRR_SOURCE_DIR) + "/examples/" + name; }

// What a step shows its hooks, in order: "done <site>" and "probe <site>".
class OpLog : public Hooks {
 public:
  explicit OpLog(ProbeLevel level) : level_(level) {}
  ProbeLevel probe_level() const override { return level_; }
  void step_begin(int64_t, int, int64_t) override { steps.emplace_back(); }
  void op_done(std::string_view site) override {
    if (!steps.empty()) steps.back().push_back("done " + std::string(site));
  }
  void probe(std::string_view site, Phase, const Tensor&) override {
    if (!steps.empty()) steps.back().push_back("probe " + std::string(site));
  }
  void step_end(const StepSummary& s) override {
    params.clear();
    for (const auto& [name, t] : s.params) params.push_back(name);
  }
  std::vector<std::vector<std::string>> steps;
  std::vector<std::string> params;

 private:
  ProbeLevel level_;
};

OpLog log_of(const std::string& file, ProbeLevel level, DeviceBackend* device) {
  OpLog hooks(level);
  auto config = load_config(example(file), {"runtime.policy=deterministic"});
  EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message);
  if (!config) return hooks;
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions options;
  options.registry = &registry;
  options.hooks = &hooks;
  options.device = device;
  auto t = Training::create(*config, options);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  if (!t) return hooks;
  Status s = (*t)->fit(2);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return hooks;
}

std::vector<std::string> done_sites(const std::vector<std::string>& step) {
  std::vector<std::string> out;
  for (const std::string& e : step)
    if (e.rfind("done ", 0) == 0) out.push_back(e.substr(5));
  return out;
}

class OpDoneTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OpDoneTest, EveryProbeIsPrecededByItsOpsDoneAndEveryStepEndsItsLossAndUpdates) {
  for (ProbeLevel level : {ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op}) {
    SCOPED_TRACE(probe_level_name(level));
    const OpLog log = log_of(GetParam(), level, nullptr);
    ASSERT_EQ(log.steps.size(), 2u);
    for (const auto& step : log.steps) {
      for (size_t i = 0; i < step.size(); ++i)
        if (step[i].rfind("probe ", 0) == 0) {
          ASSERT_GT(i, 0u) << step[i];
          EXPECT_EQ(step[i - 1], "done " + step[i].substr(6));
        }
      const std::vector<std::string> done = done_sites(step);
      EXPECT_EQ(std::count(done.begin(), done.end(), "loss"), 1);
      ASSERT_FALSE(log.params.empty());
      for (const std::string& p : log.params)
        EXPECT_EQ(std::count(done.begin(), done.end(), p + "/update:out"), 1) << p;
      // The updates end the step, in the order of the parameters.
      ASSERT_GE(done.size(), log.params.size());
      EXPECT_EQ(done.back(), log.params.back() + "/update:out");
    }
  }
}

TEST_P(OpDoneTest, ALowerLevelEndsASubsequenceOfTheOpsOfLevelOp) {
  const OpLog step = log_of(GetParam(), ProbeLevel::step, nullptr);
  const OpLog op = log_of(GetParam(), ProbeLevel::op, nullptr);
  ASSERT_EQ(step.steps.size(), op.steps.size());
  for (size_t s = 0; s < step.steps.size(); ++s) {
    const std::vector<std::string> a = done_sites(step.steps[s]), b = done_sites(op.steps[s]);
    size_t j = 0;
    for (const std::string& site : a) {
      while (j < b.size() && b[j] != site) ++j;
      ASSERT_LT(j, b.size()) << site << " is not an op at level op, in this order";
      ++j;
    }
  }
}

TEST_P(OpDoneTest, OnADeviceTheOpsAreThoseOfTheCpu) {
  for (ProbeLevel level : {ProbeLevel::step, ProbeLevel::op}) {
    SCOPED_TRACE(probe_level_name(level));
    EmulatedDevice device;
    const OpLog cpu = log_of(GetParam(), level, nullptr);
    const OpLog emulated = log_of(GetParam(), level, &device);
    ASSERT_EQ(cpu.steps.size(), emulated.steps.size());
    for (size_t s = 0; s < cpu.steps.size(); ++s) EXPECT_EQ(done_sites(cpu.steps[s]), done_sites(emulated.steps[s]));
  }
}

INSTANTIATE_TEST_SUITE_P(Models, OpDoneTest,
                         ::testing::Values("digits_mlp.toml", "digits_cnn.toml", "breast_cancer.toml"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string n = p.param.substr(0, p.param.find('.'));
                           return n;
                         });

}  // namespace
}  // namespace trainrr
