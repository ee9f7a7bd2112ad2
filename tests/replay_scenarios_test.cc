// Divergence scenarios: each run is recorded, then replayed, diffed or bisected, and the step, op and
// cause the tools name are checked. Every scenario also replays bit for bit with all choices forced.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "engine/kernels/matmul_openblas.h"
#include "tests/recording_util.h"
#include "tests/test_util.h"

namespace trainrr::testing {
namespace {

std::string breast_cancer_config(const std::string& extra_top, const std::string& data, const std::string& layers_extra,
                                 const std::string& train_extra, const std::string& runtime) {
  return extra_top + "[data]\npath = \"" + data + "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"standardize\"\n" +
         "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n" + layers_extra +
         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
         "[train]\nepochs = 2\nbatch_size = 32\nloss = \"binary_crossentropy\"\n" +
         train_extra + "[runtime]\n" + runtime;
}

const std::string kBreastCancer = example("data/breast_cancer.csv");

bool has(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

class Scenario : public ::testing::Test {
 protected:
  std::string config(const std::string& text) { return dir.write("run.toml", text); }
  CommandResult trainrr(const std::string& args) { return run_trainrr(args); }
  void expect_reproduces(const std::string& trace, const std::string& extra = "") {
    CommandResult r = trainrr("replay " + trace + " --force all " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(has(r.output, "reproduced bit for bit")) << r.output;
  }
  TempDir dir;
};

TEST_F(Scenario, UnseededRunReplaysForcedAndDivergesAtTheFirstInitializerDrawFree) {
  const std::string cfg = config(breast_cancer_config("", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  CommandResult show = trainrr("show " + trace);
  EXPECT_TRUE(has(show.output, "OS")) << show.output;
  expect_reproduces(trace);
  CommandResult r = trainrr("replay " + trace + " --force none --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"rng\"")) << r.output;
  EXPECT_TRUE(has(r.output, "\"site\":\"init/dense_1.kernel\"")) << r.output;
  EXPECT_TRUE(has(r.output, "\"step\":0")) << r.output;
  EXPECT_TRUE(has(r.output, "seed differs")) << r.output;
  // Past the first divergence, to the end: the report adds how far the loss drifted.
  CommandResult drift = trainrr("replay " + trace + " --force none --keep-going");
  EXPECT_EQ(drift.exit_code, 1) << drift.output;
  EXPECT_TRUE(has(drift.output, "steps compared: 30")) << drift.output;  // every step of the run
  EXPECT_TRUE(has(drift.output, "final loss: ")) << drift.output;
  EXPECT_TRUE(has(drift.output, " (recorded) vs ")) << drift.output;
}

// The deterministic policy's kernels do not depend on the thread count: a replay on more threads reproduces.
// It says what was compared, and, as the machine differs, that a level-step trace cannot see inside a step.
TEST_F(Scenario, ReproducedReplaySaysWhatItComparedAndWhatALevelStepTraceCannotSee) {
  const std::string cfg = config(breast_cancer_config("seed = 2\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string trace = dir.file("a.trr"), op_trace = dir.file("op.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  CommandResult same = trainrr("replay " + trace);
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_TRUE(has(same.output, "compared: each step's loss, metrics and parameters (level step)")) << same.output;
  EXPECT_FALSE(has(same.output, "values inside a step were not recorded")) << same.output;
  CommandResult more = trainrr("replay " + trace + " --set runtime.threads=2");
  EXPECT_EQ(more.exit_code, 0) << more.output;
  EXPECT_TRUE(has(more.output, "threads: 1 (recorded) vs 2 (replayed)")) << more.output;
  EXPECT_TRUE(has(more.output, "note: recorded at level step: values inside a step were not recorded")) << more.output;
  ASSERT_EQ(trainrr("record " + cfg + " -o " + op_trace + " --level op").exit_code, 0);
  CommandResult op = trainrr("replay " + op_trace + " --set runtime.threads=2");
  EXPECT_EQ(op.exit_code, 0) << op.output;
  EXPECT_TRUE(has(op.output, "compared: every op's output")) << op.output;
  EXPECT_FALSE(has(op.output, "values inside a step were not recorded")) << op.output;
}

// The same deterministic run recorded at each level: diff compares at the shallower level and finds them
// identical; a changed learning rate still diverges, named as a configuration difference.
TEST_F(Scenario, DiffOfOneRunRecordedAtTwoLevelsComparesAtTheShallowerLevel) {
  const std::string cfg = config(breast_cancer_config("seed = 2\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  std::map<std::string, std::string> traces;
  for (const std::string level : {"step", "layer", "op"}) {
    traces[level] = dir.file(level + ".trr");
    ASSERT_EQ(trainrr("record " + cfg + " -o " + traces[level] + " --level " + level).exit_code, 0);
  }
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{{"step", "op"}, {"op", "layer"}, {"layer", "step"}}) {
    CommandResult d = trainrr("diff " + traces[a] + " " + traces[b]);
    EXPECT_EQ(d.exit_code, 0) << d.output;
    EXPECT_TRUE(has(d.output, "identical: the two runs made the same choices")) << d.output;
    const std::string shallower = a == "step" || b == "step" ? "step" : "layer";
    EXPECT_TRUE(has(d.output, "note: A was recorded at level " + a + ", B at level " + b + ": compared at level " + shallower)) << d.output;
    EXPECT_FALSE(has(d.output, "note: epoch 1:")) << "identical runs need no side-by-side metrics: " << d.output;
  }
  const std::string faster = dir.file("faster.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + faster + " --level op --set train.optimizer.learning_rate=0.002").exit_code, 0);
  CommandResult d = trainrr("diff " + traces["step"] + " " + faster + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"config\"")) << d.output;
  EXPECT_TRUE(has(d.output, "\"step\":0")) << d.output;
  // Same initialization, a different first update: no step had identical parameters, and the metrics of
  // each epoch are set side by side.
  CommandResult text = trainrr("diff " + traces["step"] + " " + faster);
  EXPECT_TRUE(has(text.output, "parameters identical through step: none: they differ after the first step"))
      << text.output;
  EXPECT_TRUE(has(text.output, "note: epoch 2: loss ")) << text.output;
}

// A matmul whose reduction dimension (the batch) dwarfs its output goes to the split-k kernel, whose bits
// depend on the thread count. One batch per epoch: with two, the first-ready loader chooses which comes
// first, and for one of the two batches Adam's first update rounds a few-ULP gradient difference away, so
// a level-step trace would sometimes reproduce. The trace is recorded at level op, so the split-k result
// itself is compared.
std::string thread_dependent_config(int threads) {
  return "seed = 3\n[data]\nsource = \"synthetic\"\nshape = [8]\nclasses = 2\nsamples = 2048\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 4\nactivation = \"relu\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 2\nactivation = \"softmax\"\n"
         "[train]\nepochs = 2\nbatch_size = 2048\nloss = \"sparse_categorical_crossentropy\"\n"
         "[train.optimizer]\ntype = \"adam\"\n"
         "[runtime]\npolicy = \"default\"\nthreads = " +
         std::to_string(threads) + "\n";
}

TEST_F(Scenario, FewerThreadsDivergeAtTheFirstThreadDependentOpOfStepZero) {
  const std::string cfg = config(thread_dependent_config(2));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace + " --level op").exit_code, 0);
  expect_reproduces(trace);
  // Every choice forced, one thread: the forced split-k kernel splits its sums differently.
  CommandResult forced = trainrr("replay " + trace + " --set runtime.threads=1 --json");
  EXPECT_EQ(forced.exit_code, 1) << forced.output;
  EXPECT_TRUE(has(forced.output, "\"step\":0")) << forced.output;
  EXPECT_TRUE(has(forced.output, "\"phase\":\"backward\"")) << forced.output;
  EXPECT_TRUE(has(forced.output, "splitk")) << forced.output;
  EXPECT_TRUE(has(forced.output, "\"category\":\"numeric\"")) << forced.output;
  EXPECT_TRUE(has(forced.output, "2 threads recorded, 1 replayed")) << forced.output;
  EXPECT_TRUE(has(forced.output, "\"key\":\"threads\",\"recorded\":\"2\",\"replayed\":\"1\"")) << forced.output;
  // Kernels free, one thread: another kernel is selected there.
  CommandResult free_kernels = trainrr("replay " + trace + " --set runtime.threads=1 --force rng,split,shuffle,loader --json");
  EXPECT_EQ(free_kernels.exit_code, 1) << free_kernels.output;
  EXPECT_TRUE(has(free_kernels.output, "\"category\":\"kernel\"")) << free_kernels.output;
  EXPECT_TRUE(has(free_kernels.output, "\"step\":0")) << free_kernels.output;
  // Bisect: with every choice forced it still diverges, so no choice explains it; it names the op and the
  // thread count as replay does.
  CommandResult b = trainrr("bisect " + trace + " --set runtime.threads=1 --json");
  EXPECT_EQ(b.exit_code, 1) << b.output;
  EXPECT_TRUE(has(b.output, "no choice to force can explain it")) << b.output;
  EXPECT_TRUE(has(b.output, "\"phase\":\"backward\"")) << b.output;
  EXPECT_TRUE(has(b.output, "splitk")) << b.output;
  EXPECT_TRUE(has(b.output, "\"key\":\"threads\",\"recorded\":\"2\",\"replayed\":\"1\"")) << b.output;
}

// Replaces the kernel chosen at one site, as an autotuner timing the candidates differently would.
class OtherKernel : public ForwardingHooks {
 public:
  OtherKernel(Hooks& in, std::string site, std::string id) : ForwardingHooks(in), site_(site), id_(id) {}
  void kernel_selected(KernelChoice& c) override {
    if (c.site == site_) c.chosen = id_;
    in_.kernel_selected(c);
  }

 private:
  std::string site_, id_;
};

TEST_F(Scenario, AutotuneChoosingAnotherKernelIsNamedAsTheCause) {
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\npolicy = \"autotune\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {}, a), "");
  ASSERT_EQ(record_via_api(cfg, {}, b,
                           [](Hooks& in) {
                             return std::make_unique<OtherKernel>(in, "dense_1/matmul.fwd", "f32_matmul__cpu_reference");
                           }),
            "");
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"kernel\"")) << d.output;
  EXPECT_TRUE(has(d.output, "dense_1/matmul.fwd")) << d.output;
  expect_reproduces(b);
  CommandResult bis = trainrr("bisect " + b + " --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "kernel:dense_1/matmul.fwd")) << bis.output;
}

// OpenBLAS's code for another CPU than this one that this CPU can run, or "" if there is none.
std::string other_openblas_core() {
  auto isa = runtime_isa();
  for (const char* core : {"Prescott", "Nehalem", "Haswell"})
    if (isa && core != openblas_core() && openblas_core_runs_on(core, cpu_flags(), *isa)) return core;
  return "";
}

TEST_F(Scenario, ReplayRestartsWithTheRecordingsOpenblasCode) {
  const std::string other = other_openblas_core();
  if (other.empty()) GTEST_SKIP() << "no OpenBLAS code for another CPU runs here";
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string trace = dir.file("other_cpu.trr");
  CommandResult rec = run_trainrr_env("OPENBLAS_CORETYPE=" + other, "record " + cfg + " -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;

  CommandResult r = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "OpenBLAS runs its " + other +
                                " code, as recorded: the replay restarted with OPENBLAS_CORETYPE=" + other +
                                " (this CPU's own pick is " + openblas_core() + ")"))
      << r.output;
  EXPECT_FALSE(has(r.output, "lib.openblas")) << r.output;  // no difference left in the environment
  CommandResult json = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace + " --json");
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_TRUE(has(json.output, "restarted with OPENBLAS_CORETYPE=" + other)) << json.output;

  // Without the kernels forced, the replay runs this CPU's own code, and says so among the differences.
  CommandResult free =
      run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace + " --force rng,split,shuffle,loader");
  EXPECT_FALSE(has(free.output, "restarted")) << free.output;
  EXPECT_TRUE(has(free.output, "lib.openblas: OpenBLAS")) << free.output;
  EXPECT_TRUE(has(free.output, "core=" + openblas_core())) << free.output;
}

TEST_F(Scenario, OpenblasRunningOtherCodeIsNumericWithBothCodesNamed) {
  const std::string other = other_openblas_core();
  if (other.empty()) GTEST_SKIP() << "no OpenBLAS code for another CPU runs here";
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string trace = dir.file("openblas.trr");
  ASSERT_EQ(record_via_api(
                cfg, {}, trace,
                [](Hooks& in) {
                  return std::make_unique<OtherKernel>(in, "dense_1/matmul.fwd",
                                                       "f32_matmul__openblas_sgemm");
                },
                ProbeLevel::layer),
            "");
  expect_reproduces(trace);
  // OPENBLAS_CORETYPE set by the user is left alone: OpenBLAS runs that code, and the replay says so.
  CommandResult r = run_trainrr_env("OPENBLAS_CORETYPE=" + other, "replay " + trace);
  EXPECT_TRUE(has(r.output, "OPENBLAS_CORETYPE=" + other + " is set here: OpenBLAS runs its " + other +
                                " code; the recording's ran its " + openblas_core() + " code"))
      << r.output;
  if (r.exit_code == 0)
    GTEST_SKIP() << "OpenBLAS's " << openblas_core() << " and " << other << " code round this run alike";
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output,
                  "cause: numeric: same kernel f32_matmul__openblas_sgemm, same inputs, different output: "
                  "OpenBLAS ran its " +
                      openblas_core() + " code (recorded) and its " + other + " code (replayed)"))
      << r.output;
}

// Batch normalization over 128 images of 8x8 gives column sums of 8192 x 16 values: large enough for the
// default policy to take the kernel that adds its partial sums in completion order.
std::string completion_order_config() {
  return "seed = 5\n[data]\npath = \"" + example("data/digits.csv") +
         "\"\nlabel = \"digit\"\nreshape = [8, 8, 1]\ntest_fraction = 0.2\nscale = \"minmax\"\n"
         "[[model.layers]]\ntype = \"Conv2D\"\nfilters = 16\nkernel_size = 3\npadding = \"same\"\n"
         "[[model.layers]]\ntype = \"BatchNormalization\"\n"
         "[[model.layers]]\ntype = \"Activation\"\nactivation = \"relu\"\n"
         "[[model.layers]]\ntype = \"Flatten\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nactivation = \"softmax\"\n"
         "[train]\nepochs = 1\nbatch_size = 128\nloss = \"sparse_categorical_crossentropy\"\n"
         "[runtime]\npolicy = \"default\"\nthreads = 2\n";
}

// Hands out the batches of each epoch in order, as an ordered loader does, so that the only race left in
// a recording is the kernels' completion order.
class InOrderBatches : public ForwardingHooks {
 public:
  using ForwardingHooks::ForwardingHooks;
  void shuffle(std::string_view s, int e, std::vector<uint32_t>& p, const RngDraw* d) override {
    next_ = 0;
    in_.shuffle(s, e, p, d);
  }
  void batch_order(int64_t step, int64_t& b) override {
    b = next_++;
    in_.batch_order(step, b);
  }

 private:
  int64_t next_ = 0;
};

// Besides handing out batches in order: from a site's second accumulation on, its partial sums are added
// in index order, or in reverse. On a loaded machine the threads tend to finish in index order, so the
// recordings' orders are fixed here rather than left to the race: a reversed recording differs from an
// in-order one, and from a free replay, whatever the machine's load.
class FixedAccumulation : public InOrderBatches {
 public:
  FixedAccumulation(Hooks& in, bool reversed) : InOrderBatches(in), reversed_(reversed) {}
  void accumulation_order(std::string_view site, std::vector<uint32_t>& order) override {
    if (auto it = parts_.find(std::string(site)); it != parts_.end()) {
      order.resize(it->second);
      std::iota(order.begin(), order.end(), 0u);
      if (reversed_) std::reverse(order.begin(), order.end());
    }
    in_.accumulation_order(site, order);
  }
  void accumulated(std::string_view site, const std::vector<uint32_t>& order) override {
    parts_[std::string(site)] = order.size();
    in_.accumulated(site, order);
  }

 private:
  bool reversed_;
  std::map<std::string, size_t> parts_;
};

TEST_F(Scenario, CompletionOrderAccumulationIsNumericAndForcingItsOrderReproduces) {
  const std::string cfg = config(completion_order_config());
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(
      record_via_api(cfg, {}, a, [](Hooks& in) { return std::make_unique<FixedAccumulation>(in, true); }),
      "");
  expect_reproduces(a);
  ASSERT_EQ(
      record_via_api(cfg, {}, b, [](Hooks& in) { return std::make_unique<FixedAccumulation>(in, false); }),
      "");
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  ASSERT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"numeric\"")) << d.output;
  EXPECT_TRUE(has(d.output, "completion order")) << d.output;
  // A free replay races again; the smallest forcing that reproduces includes a completion-order kernel.
  CommandResult bis = trainrr("bisect " + a + " --json");
  ASSERT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"minimal forced choices\":\"kernel:")) << bis.output;
}

// Swaps the first two rows of one epoch's order, as a changed shuffle would.
class OtherShuffle : public ForwardingHooks {
 public:
  OtherShuffle(Hooks& in, int epoch) : ForwardingHooks(in), epoch_(epoch) {}
  void shuffle(std::string_view s, int e, std::vector<uint32_t>& p, const RngDraw* d) override {
    if (e == epoch_ && p.size() > 1) std::swap(p[0], p[1]);
    in_.shuffle(s, e, p, d);
  }

 private:
  int epoch_;
};

// Epochs in messages count from 1, as training prints them: the second epoch (index 1) is "epoch 2".
TEST_F(Scenario, ShuffleDifferenceNamesTheEpochCountedFromOne) {
  const std::string cfg = config(
      breast_cancer_config("seed = 6\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {}, a), "");
  ASSERT_EQ(record_via_api(cfg, {}, b, [](Hooks& in) { return std::make_unique<OtherShuffle>(in, 1); }), "");
  CommandResult d = trainrr("diff " + a + " " + b);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "epoch 2: the order of the rows differs")) << d.output;
  CommandResult r = trainrr("replay " + b + " --force none");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "epoch 2: the order of the ")) << r.output;
  CommandResult bis = trainrr("bisect " + b);
  EXPECT_TRUE(has(bis.output, "epoch 2: the recorded order is not the one its draw gives")) << bis.output;
}

// Hands out another batch at one step, as a first-ready loader's race would.
class OtherBatch : public ForwardingHooks {
 public:
  OtherBatch(Hooks& in, int64_t step) : ForwardingHooks(in), step_at_(step) {}
  void batch_order(int64_t step, int64_t& b) override {
    if (step == step_at_) b = b + 1;  // the next batch of the epoch, not yet handed out in order
    in_.batch_order(step, b);
  }

 private:
  int64_t step_at_;
};

// Step 0 takes batch `last` (the epoch's last) where the loader proposed another: every batch is still
// untaken at step 0, whichever loader runs.
class LastBatchFirst : public ForwardingHooks {
 public:
  LastBatchFirst(Hooks& in, int64_t last) : ForwardingHooks(in), last_(last) {}
  void batch_order(int64_t step, int64_t& b) override {
    if (step == 0) b = last_;
    in_.batch_order(step, b);
  }

 private:
  int64_t last_;
};

TEST_F(Scenario, FirstReadyLoaderOrderIsNamedAsTheCause) {
  const std::string cfg = config(breast_cancer_config("seed = 6\n", kBreastCancer, "", "", "threads = 2\npolicy = \"default\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {"runtime.policy=deterministic"}, a), "");
  ASSERT_EQ(record_via_api(cfg, {"runtime.policy=deterministic"}, b,
                           [](Hooks& in) { return std::make_unique<OtherBatch>(in, 3); }),
            "");
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"loader\"")) << d.output;
  EXPECT_TRUE(has(d.output, "\"step\":3")) << d.output;
  expect_reproduces(b);
  CommandResult r = trainrr("replay " + b + " --force none --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"loader\"")) << r.output;
  CommandResult bis = trainrr("bisect " + b + " --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"minimal forced choices\":\"loader\"")) << bis.output;
  EXPECT_TRUE(has(bis.output, "--force loader")) << bis.output;
  // A recording with the first-ready loader itself replays bit for bit with its batch order forced.
  const std::string c = dir.file("c.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + c).exit_code, 0);
  expect_reproduces(c);
  // Bisect forces the racy batch order always, and finds that nothing else needs forcing. On a loaded
  // machine the first-ready loader hands out the batches in order, in the recording and in a free replay
  // alike; a recording whose first batch is the epoch's last is one that no free replay matches.
  const std::string racy = dir.file("racy.trr");
  ASSERT_EQ(record_via_api(cfg, {}, racy, [](Hooks& in) { return std::make_unique<LastBatchFirst>(in, 14); }),
            "");
  CommandResult real = trainrr("bisect " + racy + " --json");
  ASSERT_EQ(real.exit_code, 1) << real.output;
  EXPECT_TRUE(has(real.output, "\"minimal forced choices\":\"loader\"")) << real.output;
  EXPECT_TRUE(has(real.output, "\"racy choices, always forced\":\"loader\"")) << real.output;
  EXPECT_TRUE(has(real.output, "\"category\":\"loader\"")) << real.output;
}

// One extra word drawn from the augmentation stream at step 2, as a changed augmentation would.
class ExtraNoiseDraw : public ForwardingHooks {
 public:
  using ForwardingHooks::ForwardingHooks;
  void rng_draw(RngDraw& d) override {
    if (d.stream == "augment/noise" && step_ == 2 && !done_) {
      d.counter += 1;
      done_ = true;
    }
    in_.rng_draw(d);
  }

 private:
  bool done_ = false;
};

TEST_F(Scenario, ExtraAugmentationDrawIsRngAndLeavesDropoutDrawsAlone) {
  const std::string cfg = config(breast_cancer_config(
      "seed = 7\n[augment]\nnoise_stddev = 0.05\n", kBreastCancer, "[[model.layers]]\ntype = \"Dropout\"\nrate = 0.2\n", "",
      "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {}, a), "");
  ASSERT_EQ(record_via_api(cfg, {}, b, [](Hooks& in) { return std::make_unique<ExtraNoiseDraw>(in); }), "");
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"rng\"")) << d.output;
  EXPECT_TRUE(has(d.output, "\"step\":2")) << d.output;
  EXPECT_TRUE(has(d.output, "augment/noise")) << d.output;
  EXPECT_TRUE(has(d.output, "other streams unaffected: ")) << d.output;
  EXPECT_TRUE(has(d.output, "dropout/dropout_1 (")) << d.output;
  expect_reproduces(b);
  CommandResult r = trainrr("replay " + b + " --force none --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"rng\"")) << r.output;
  CommandResult bis = trainrr("bisect " + b + " --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "rng:augment/noise")) << bis.output;
}

TEST_F(Scenario, ChangedDataValueIsDataBeforeAnyStep) {
  const std::string csv = dir.file("bc.csv");
  std::filesystem::copy_file(kBreastCancer, csv);
  const std::string cfg = config(breast_cancer_config("seed = 8\n", csv, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a).exit_code, 0);
  expect_reproduces(a);
  {
    std::ifstream in(csv);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t line2 = text.find('\n') + 1;
    text.replace(line2, text.find(',', line2) - line2, "99.5");  // one value of the first row
    std::ofstream(csv, std::ios::trunc) << text;
  }
  CommandResult refused = trainrr("replay " + a);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(has(refused.output, "differs from the recorded one")) << refused.output;
  CommandResult r = trainrr("replay " + a + " --allow-data-change --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"data\"")) << r.output;
  EXPECT_TRUE(has(r.output, "before any step")) << r.output;
}

TEST_F(Scenario, ChangedLearningRateIsConfig) {
  const std::string cfg = config(breast_cancer_config("seed = 9\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a).exit_code, 0);
  ASSERT_EQ(trainrr("record " + cfg + " -o " + b + " --set train.optimizer.learning_rate=0.01").exit_code, 0);
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"config\"")) << d.output;
  EXPECT_TRUE(has(d.output, "train.optimizer.learning_rate: 0.001 -> 0.01")) << d.output;
  CommandResult r = trainrr("replay " + a + " --set train.optimizer.learning_rate=0.01 --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"config\"")) << r.output;
  expect_reproduces(b);
  // No recorded choice can undo a configuration change, and bisect says so.
  CommandResult bis = trainrr("bisect " + a + " --set train.optimizer.learning_rate=0.01");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "every recorded choice forced")) << bis.output;
}

TEST_F(Scenario, GenericInstructionSetAgainstAvx2IsKernelWithTheIsaListed) {
  if (detect_isa() < Isa::avx2) GTEST_SKIP() << "this CPU has no AVX2";
  const std::string cfg = config(breast_cancer_config("seed = 10\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr_env("TRAINRR_ISA=generic", "record " + cfg + " -o " + b).exit_code, 0);
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"kernel\"")) << d.output;
  EXPECT_TRUE(has(d.output, "blocked_generic")) << d.output;
  EXPECT_TRUE(has(d.output, "\"key\":\"isa\"")) << d.output;
  expect_reproduces(a);
  expect_reproduces(b);
  // The AVX kernels recorded in `a` cannot run in a generic run: it runs its own, says so, and diverges
  // there with the kernels and the instruction set named.
  CommandResult substituted = run_trainrr_env("TRAINRR_ISA=generic", "replay " + a + " --json");
  EXPECT_EQ(substituted.exit_code, 1) << substituted.output;
  EXPECT_TRUE(has(substituted.output, "\"category\":\"kernel\"")) << substituted.output;
  EXPECT_TRUE(has(substituted.output, "\"key\":\"isa\"")) << substituted.output;
  EXPECT_TRUE(has(substituted.output, "cannot run here: replayed with f32_matmul__cpu_blocked_generic")) << substituted.output;
  CommandResult bisect_here = run_trainrr_env("TRAINRR_ISA=generic", "bisect " + a + " --json");
  EXPECT_EQ(bisect_here.exit_code, 1) << bisect_here.output;
  EXPECT_TRUE(has(bisect_here.output, "\"category\":\"kernel\"")) << bisect_here.output;
  EXPECT_TRUE(has(bisect_here.output, "the recorded kernels that cannot run here are what differs")) << bisect_here.output;
  CommandResult r = run_trainrr_env("TRAINRR_ISA=generic", "replay " + a + " --force rng,split,shuffle,loader --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"kernel\"")) << r.output;
  EXPECT_TRUE(has(r.output, "\"key\":\"isa\"")) << r.output;
  CommandResult bis = trainrr("bisect " + b + " --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"minimal forced choices\":\"kernel:")) << bis.output;
}

TEST_F(Scenario, EmbeddedDataTraceReplaysAloneElsewhere) {
  const std::string csv = dir.file("bc.csv");
  std::filesystem::copy_file(kBreastCancer, csv);
  const std::string cfg = config(breast_cancer_config("seed = 11\n", csv, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a + " --embed-data").exit_code, 0);
  TempDir elsewhere;
  const std::string moved = elsewhere.file("moved.trr");
  std::filesystem::copy_file(a, moved);
  std::filesystem::remove(csv);
  std::filesystem::remove(cfg);
  expect_reproduces(moved);
}

TEST_F(Scenario, BadInputIsRefusedWithExitCodeTwo) {
  const std::string text = dir.write("not.trr", "this is not a trace\n");
  CommandResult r = trainrr("replay " + text);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(has(r.output, "not.trr")) << r.output;
  EXPECT_EQ(trainrr("replay " + dir.file("absent.trr")).exit_code, 2);

  const std::string csv = dir.file("bc.csv");
  std::filesystem::copy_file(kBreastCancer, csv);
  const std::string cfg = config(breast_cancer_config("seed = 12\n", csv, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a).exit_code, 0);
  // Truncated in the middle of a message.
  const auto size = std::filesystem::file_size(a);
  const std::string cut = dir.file("cut.trr");
  std::filesystem::copy_file(a, cut);
  std::filesystem::resize_file(cut, size / 2 + 3);
  // The cut falls in step 0's message (its setup draws make it the largest): nothing to compare.
  CommandResult t = trainrr("replay " + cut);
  EXPECT_EQ(t.exit_code, 2) << t.output;
  EXPECT_TRUE(has(t.output, cut + ": the trace holds no complete step")) << t.output;
  // bisect --against a recording of another configuration.
  const std::string other = dir.file("other.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + other + " --set train.optimizer.learning_rate=0.01").exit_code,
            0);
  CommandResult against = trainrr("bisect " + a + " --against " + other);
  EXPECT_EQ(against.exit_code, 2) << against.output;
  EXPECT_TRUE(
      has(against.output, "is a recording of another run (train.optimizer.learning_rate: 0.001 -> 0.01)"))
      << against.output;
  // Missing data file.
  std::filesystem::rename(csv, csv + ".away");
  CommandResult missing = trainrr("replay " + a);
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_TRUE(has(missing.output, "--data")) << missing.output;
  // Pointed elsewhere with --data, it replays.
  expect_reproduces(a, "--data " + csv + ".away");
  // A trace from a newer format.
  trace::TraceHeader h;
  h.min_reader_version = trace::kReaderVersion + 1;
  const std::string newer = dir.file("newer.trr");
  { auto w = trace::TraceWriter::create(newer, h); ASSERT_TRUE(w.ok()); (void)(*w)->finish({}); }
  CommandResult n = trainrr("replay " + newer);
  EXPECT_EQ(n.exit_code, 2) << n.output;
  EXPECT_TRUE(has(n.output, "needs reader version " + std::to_string(trace::kReaderVersion + 1))) << n.output;
}

}  // namespace
}  // namespace trainrr::testing
