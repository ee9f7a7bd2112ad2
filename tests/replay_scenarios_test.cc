// Divergence scenarios: each run is recorded, then replayed, diffed or bisected, and the step, op and
// cause the tools name are checked. Every scenario also replays bit for bit with all choices forced.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <regex>
#include <sstream>

#include "engine/kernels/matmul_openblas.h"
#include "engine/thread_pool.h"
#include "tests/recording_util.h"
#include "tests/test_util.h"
#include "traces/trace_reader.h"

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

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The loss a trace recorded at `step` (NaN if it holds no such step).
double recorded_loss(const std::string& trace_path, int64_t step) {
  auto r = trace::TraceReader::open(trace_path);
  if (!r) return NAN;
  for (;;) {
    auto m = (*r)->next();
    if (!m || !*m) return NAN;
    if (const auto* s = std::get_if<trace::TraceStep>(&(*m)->value); s && s->index == step && s->end)
      return s->end->loss;
  }
}

// Checks a report's "loss at step N: X (la) vs Y (lb)" fact: each number given a trace must read back as
// the loss that trace recorded at that step, bit for bit, so two different losses never print alike.
void expect_exact_losses(const std::string& report, int64_t step, const std::string& trace_a,
                         const std::string& la, const std::string& trace_b, const std::string& lb) {
  std::smatch m;
  const std::regex re("loss at step " + std::to_string(step) + ": (\\S+) \\(" + la + "\\) vs (\\S+) \\(" +
                      lb + "\\)");
  ASSERT_TRUE(std::regex_search(report, m, re)) << report;
  const double a = recorded_loss(trace_a, step);
  EXPECT_EQ(std::stod(m[1].str()), a) << m[0];
  if (!trace_b.empty()) {
    EXPECT_EQ(std::stod(m[2].str()), recorded_loss(trace_b, step)) << m[0];
  }
}

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

TEST_F(Scenario, UnseededSklearnSplitDrawsASeedNumpyTakesAndReplays) {
  // As scikit-learn's random_state=None: the seed comes from the OS, within numpy's RandomState range.
  const std::string cfg = config(breast_cancer_config("", kBreastCancer, "", "", "threads = 1\n"));
  for (int i = 0; i < 3; ++i) {
    const std::string trace = dir.file("sk" + std::to_string(i) + ".trr");
    CommandResult rec = trainrr("record " + cfg + " --set data.split=\"sklearn\" -o " + trace);
    ASSERT_EQ(rec.exit_code, 0) << rec.output;
    EXPECT_TRUE(has(rec.output, "(sklearn split)")) << rec.output;
    auto reader = trace::TraceReader::open(trace);
    ASSERT_TRUE(reader) << reader.error().message;
    EXPECT_TRUE((*reader)->header().seed_from_entropy);
    EXPECT_LE((*reader)->header().seed, uint64_t{0xFFFFFFFF});
    expect_reproduces(trace);
  }
}

TEST_F(Scenario, DiffOfAnUnseededRunAndOneSeededWithTheSeedItDrewIsIdentical) {
  const std::string cfg =
      config(breast_cancer_config("", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a).exit_code, 0);
  auto reader = trace::TraceReader::open(a);
  ASSERT_TRUE(reader) << reader.error().message;
  const uint64_t drawn = (*reader)->header().seed;
  ASSERT_EQ(trainrr("record " + cfg + " --set seed=" + std::to_string(drawn) + " -o " + b).exit_code, 0);
  for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, a}}) {
    CommandResult d = trainrr("diff " + x + " " + y);
    EXPECT_EQ(d.exit_code, 0) << d.output;
    EXPECT_TRUE(has(d.output, "identical")) << d.output;
    EXPECT_FALSE(has(d.output, "seed:")) << d.output;
  }
}

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
  expect_exact_losses(drift.output, 29, trace, "recorded", "", "replayed");
  EXPECT_FALSE(has(drift.output, "final loss")) << drift.output;
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
  EXPECT_TRUE(has(text.output, "trainable parameters identical through step: none: they differ after step 0"))
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
         "[runtime]\npolicy = \"default\"\nthreads = " + std::to_string(threads) + "\n";
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
  EXPECT_TRUE(has(forced.output, "2 threads (recorded), 1 (replayed)")) << forced.output;
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

// An autotuned OpenBLAS pick, as the selector words it: "autotune (OpenBLAS ... core=... threads=...)".
class AutotunedOpenblas : public ForwardingHooks {
 public:
  using ForwardingHooks::ForwardingHooks;
  void kernel_selected(KernelChoice& c) override {
    if (c.site == "dense_1/matmul.fwd") {
      c.chosen = "f32_matmul__openblas_sgemm";
      c.reason = "autotune (" + openblas_description() + ")";
    }
    // And a choice a free replay makes otherwise, so that bisect has a divergence to narrow.
    if (c.site == "dense_2/matmul.fwd") c.chosen = "f32_matmul__cpu_reference";
    in_.kernel_selected(c);
  }
};

TEST_F(Scenario, BisectAlwaysForcesAnAutotunedOpenblasPick) {
  // 64 features: OpenBLAS and the engine's own matmul sum them in different orders.
  const std::string cfg =
      config("seed = 4\n[data]\npath = \"" + example("data/digits.csv") +
             "\"\nlabel = \"digit\"\ntest_fraction = 0.2\nscale = \"minmax\"\n"
             "[[model.layers]]\ntype = \"Dense\"\nunits = 32\nactivation = \"relu\"\n"
             "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nactivation = \"softmax\"\n"
             "[train]\nepochs = 1\nbatch_size = 64\nloss = \"sparse_categorical_crossentropy\"\n"
             "[runtime]\nthreads = 1\n");
  const std::string trace = dir.file("tuned.trr");
  ASSERT_EQ(record_via_api(cfg, {}, trace, [](Hooks& in) { return std::make_unique<AutotunedOpenblas>(in); }),
            "");
  CommandResult bis = trainrr("bisect " + trace);
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  const size_t racy = bis.output.find("racy choices, always forced:");
  ASSERT_NE(racy, std::string::npos) << bis.output;
  const std::string line = bis.output.substr(racy, bis.output.find('\n', racy) - racy);
  EXPECT_TRUE(has(line, "kernel:dense_1/matmul.fwd")) << bis.output;
}

// The kernel a trace chose first at `site`, or "".
std::string chosen_at(const std::string& trace, const std::string& site) {
  auto r = trace::TraceReader::open(trace);
  if (!r) return "";
  for (;;) {
    auto rec = (*r)->next();
    if (!rec || !*rec) return "";
    if (const auto* step = std::get_if<trace::TraceStep>(&(*rec)->value))
      for (const auto& e : step->events)
        if (const auto* k = std::get_if<KernelChoice>(&e); k && k->site == site) return k->chosen;
  }
}

TEST_F(Scenario, AutotuneChoosingAnotherKernelIsNamedAsTheCause) {
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\npolicy = \"autotune\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {}, a), "");
  // B runs another kernel than the one A's timing picked at dense_1's forward matmul, whichever that was.
  const std::string a_pick = chosen_at(a, "dense_1/matmul.fwd");
  ASSERT_FALSE(a_pick.empty());
  const std::string other =
      a_pick == "f32_matmul__cpu_reference" ? "f32_matmul__cpu_blocked_generic" : "f32_matmul__cpu_reference";
  ASSERT_EQ(record_via_api(
                cfg, {}, b,
                [&](Hooks& in) { return std::make_unique<OtherKernel>(in, "dense_1/matmul.fwd", other); }),
            "");
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"kernel\"")) << d.output;
  EXPECT_TRUE(has(d.output, "dense_1/matmul.fwd")) << d.output;
  // The cause says the kernels were picked by timing, with the recorded timings of every candidate.
  CommandResult text = trainrr("diff " + a + " " + b);
  EXPECT_TRUE(std::regex_search(text.output, std::regex(R"(cause: kernel: .*; A picked f32_matmul__\S+ by timing )"
                                                         R"(\(autotune\): f32_matmul__\S+ [0-9.e+-]+ us)")))
      << text.output;
  EXPECT_TRUE(has(text.output, "timings vary from run to run")) << text.output;
  expect_reproduces(b);
  CommandResult bis = trainrr("bisect " + b + " --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "kernel:dense_1/matmul.fwd")) << bis.output;
}

// The code OpenBLAS picks for this CPU by itself: what a trainrr started without OPENBLAS_CORETYPE records.
// This process's own pick (openblas_core()) follows the caller's environment, which may set the variable.
std::string native_openblas_core() {
  static const std::string core = [] {
    TempDir d;
    const std::string cfg = d.write("s.toml",
                                    "seed = 1\n[data]\nsource = \"synthetic\"\nshape = [4]\nclasses = 2\n"
                                    "samples = 8\n[[model.layers]]\ntype = \"Dense\"\nunits = 2\n"
                                    "[train]\nepochs = 1\nbatch_size = 8\nloss = \"sparse_categorical_crossentropy\"\n");
    const std::string trace = d.file("s.trr");
    CommandResult r =
        run_trainrr_env("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE", "record " + cfg + " -o " + trace);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto reader = trace::TraceReader::open(trace);
    if (!reader) return std::string();
    for (const auto& [k, v] : (*reader)->header().environment) {
      const size_t at = v.find("core=");
      if (k == "lib.openblas" && at != std::string::npos) return v.substr(at + 5, v.find(' ', at) - at - 5);
    }
    return std::string();
  }();
  return core;
}

// A code of OpenBLAS that runs here and is neither this CPU's own pick nor this process's.
std::string other_openblas_core() {
  auto isa = runtime_isa();
  for (const char* core : {"Prescott", "Nehalem", "Haswell"})
    if (isa && core != openblas_core() && core != native_openblas_core() &&
        openblas_core_runs_on(core, cpu_flags(), *isa))
      return core;
  return "";
}

// runtime.threads = 0 is every core this process may run on: a job confined to one core (taskset, a cluster's
// cpuset) runs and records one thread; the environment's cpu.cores stays the machine's.
TEST_F(Scenario, EveryCoreIsTheCoresTheProcessMayRunOn) {
  if (std::system("taskset -c 0 true >/dev/null 2>&1") != 0) GTEST_SKIP() << "no taskset here";
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 0\n"));
  const std::string trace = dir.file("one_core.trr");
  const CommandResult rec = run_trainrr_env("taskset -c 0", "record " + cfg + " -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  const CommandResult show = trainrr("show " + trace);
  EXPECT_TRUE(has(show.output, "isa: " + std::string(isa_name(detect_isa())) + ", threads: 1,"))
      << show.output;
}

// A recording of runtime.threads = 0 on two cores, replayed where the process may run on one: the recorded
// run is re-executed on its recorded count (its environment's threads), not on this machine's, and the cause
// names the kernel whose sums depend on the count, with the first element that differs.
TEST_F(Scenario, EveryCoreRecordedOnMoreCoresIsReExecutedOnTheRecordedCount) {
  if (std::system("taskset -c 0 true >/dev/null 2>&1") != 0) GTEST_SKIP() << "no taskset here";
  if (ThreadPool::hardware_threads() < 2) GTEST_SKIP() << "one core here: threads = 0 records one thread";
  // A batch of every training row: dense_2's weight gradient sums 1437 products (split-k on the threads).
  const std::string cfg =
      config("seed = 7\n[data]\npath = \"" + example("data/digits.csv") +
             "\"\nlabel = \"digit\"\ntest_fraction = 0.2\nstratify = true\nscale = \"minmax\"\n"
             "[[model.layers]]\ntype = \"Dense\"\nunits = 4\nactivation = \"relu\"\n"
             "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nactivation = \"softmax\"\n"
             "[train]\nepochs = 3\nbatch_size = 1437\nloss = \"sparse_categorical_crossentropy\"\n"
             "[train.optimizer]\ntype = \"adam\"\nlearning_rate = 0.002\n"
             "[runtime]\nthreads = 0\n");
  const std::string trace = dir.file("all_cores.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const CommandResult r = run_trainrr_env("taskset -c 0", "replay " + trace);
  if (r.exit_code == 0) GTEST_SKIP() << "the kernels sum alike on one thread and on two here:\n" << r.output;
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "its result depends on the thread count, " +
                                std::to_string(ThreadPool::hardware_threads()) +
                                " threads (recorded), 1 (replayed)"))
      << r.output;
  EXPECT_TRUE(has(r.output, "  first differing element: ")) << r.output;
  EXPECT_FALSE(has(r.output, "the recorded run itself differs")) << r.output;
}

TEST_F(Scenario, ReplayRestartsWithTheRecordingsOpenblasCode) {
  const std::string other = other_openblas_core();
  if (other.empty()) GTEST_SKIP() << "no OpenBLAS code for another CPU runs here";
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string trace = dir.file("other_cpu.trr");
  // Autotune, which times OpenBLAS against trainrr's own kernels, is the policy that may run it: a trace of
  // another policy ran no OpenBLAS code to restart for.
  CommandResult rec = run_trainrr_env("OPENBLAS_CORETYPE=" + other,
                                      "record " + cfg + " --set runtime.policy=autotune -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;

  CommandResult r = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "OpenBLAS runs its " + other +
                                " code, as recorded: the replay restarted with OPENBLAS_CORETYPE=" + other +
                                " (this CPU's own pick is " + native_openblas_core() + ")"))
      << r.output;
  EXPECT_FALSE(has(r.output, "lib.openblas")) << r.output;  // no difference left in the environment
  // A recording that named its core in its own spelling gets the same spelling back: no difference is left.
  std::string lower = other;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string spelled = dir.file("spelled.trr");
  ASSERT_EQ(run_trainrr_env("OPENBLAS_CORETYPE=" + lower,
                            "record " + cfg + " --set runtime.policy=autotune -o " + spelled)
                .exit_code,
            0);
  CommandResult same = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + spelled);
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_TRUE(has(same.output, "restarted with OPENBLAS_CORETYPE=" + lower + " (")) << same.output;
  // The environments are the users': the recording's set the variable, this one does not (the note says what
  // the restart set).
  EXPECT_TRUE(has(same.output, "env.OPENBLAS_CORETYPE: " + lower + " (recorded) vs (unset) (replayed)"))
      << same.output;
  CommandResult json = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace + " --json");
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_TRUE(has(json.output, "restarted with OPENBLAS_CORETYPE=" + other)) << json.output;

  // bisect runs its trials in one process, with this CPU's code: where that makes the forced run differ, it
  // says how to bisect with the recording's code, and that way the forced run reproduces.
  const CommandResult bis = run_trainrr_env("env -u OPENBLAS_CORETYPE", "bisect " + trace);
  if (has(bis.output, "OpenBLAS running other code than recorded is what differs")) {
    EXPECT_TRUE(has(bis.output, "; the recording's " + other + " code runs on this CPU: `OPENBLAS_CORETYPE=" +
                                    other + " trainrr bisect " + trace + "` bisects with it"))
        << bis.output;
    const CommandResult with = run_trainrr_env("OPENBLAS_CORETYPE=" + other, "bisect " + trace);
    EXPECT_FALSE(has(with.output, "even with every recorded choice forced")) << with.output;
  }
  // Without the kernels forced, the replay runs this CPU's own code, and says so among the differences.
  CommandResult free =
      run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace + " --force rng,split,shuffle,loader");
  EXPECT_FALSE(has(free.output, "restarted")) << free.output;
  EXPECT_TRUE(has(free.output, "lib.openblas: OpenBLAS")) << free.output;
  EXPECT_TRUE(has(free.output, "core=" + native_openblas_core())) << free.output;
}

TEST_F(Scenario, TrainrrIsaKeepsOpenblasWithinTheInstructionSetToo) {
  // OpenBLAS's own pick here needs more than AVX2 (an AVX-512 CPU), and its Haswell code runs here.
  if (openblas_core_runs_on(native_openblas_core(), cpu_flags(), Isa::avx2) ||
      !openblas_core_runs_on("Haswell", cpu_flags(), Isa::avx2))
    GTEST_SKIP() << "OpenBLAS runs its " << native_openblas_core() << " code here, which AVX2 allows";
  const std::string cfg = config(breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string trace = dir.file("avx2.trr");
  CommandResult rec =
      run_trainrr_env("env -u OPENBLAS_CORETYPE TRAINRR_ISA=avx2", "record " + cfg + " -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  EXPECT_TRUE(has(rec.output,
                  "note: OpenBLAS runs its Haswell code, the best within TRAINRR_ISA=avx2, restarted with "
                  "OPENBLAS_CORETYPE=Haswell (this CPU's own pick is " +
                      native_openblas_core() + ")"))
      << rec.output;
  CommandResult show = trainrr("show " + trace);
  EXPECT_TRUE(has(show.output, "core=Haswell")) << show.output;
  EXPECT_TRUE(has(show.output, "isa: avx2")) << show.output;
  // Replayed without TRAINRR_ISA, the recorded code runs again.
  CommandResult r = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + trace);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "restarted with OPENBLAS_CORETYPE=Haswell")) << r.output;
  // train does the same; a user's OPENBLAS_CORETYPE is left as it is.
  CommandResult train = run_trainrr_env("env -u OPENBLAS_CORETYPE TRAINRR_ISA=avx2", "train " + cfg);
  EXPECT_TRUE(has(train.output, "OPENBLAS_CORETYPE=Haswell")) << train.output;
  CommandResult bis = run_trainrr_env("env -u OPENBLAS_CORETYPE TRAINRR_ISA=avx2", "bisect " + trace);
  EXPECT_TRUE(has(bis.output, "the best within TRAINRR_ISA=avx2, restarted with OPENBLAS_CORETYPE=Haswell"))
      << bis.output;
  CommandResult mine = run_trainrr_env("OPENBLAS_CORETYPE=Prescott TRAINRR_ISA=avx2", "train " + cfg);
  EXPECT_EQ(mine.exit_code, 0) << mine.output;
  EXPECT_FALSE(has(mine.output, "restarted")) << mine.output;
}

TEST_F(Scenario, OpenblasRunningOtherCodeIsNumericWithBothCodesNamed) {
  const std::string other = other_openblas_core();
  if (other.empty()) GTEST_SKIP() << "no OpenBLAS code for another CPU runs here";
  // Autotune: the policy under which a run may pick OpenBLAS (here it is made to, at one site).
  const std::string cfg = config(
      breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\npolicy = \"autotune\"\n"));
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
  EXPECT_TRUE(has(bis.output, "\"minimal_forced_choices\":\"kernel:")) << bis.output;
}

// A race at a batch normalization's sum differs there first, whatever the momentum: momentum enters only the
// moving statistics, which the sum comes before.
TEST_F(Scenario, ARaceAtABatchNormalizationSumStaysNumericBesideAnotherMomentum) {
  const std::string cfg = config(completion_order_config());
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(
                cfg, {}, a, [](Hooks& in) { return std::make_unique<FixedAccumulation>(in, true); },
                ProbeLevel::op),
            "");
  ASSERT_EQ(record_via_api(
                cfg, {"model.layers[1].momentum=0.9"}, b,
                [](Hooks& in) { return std::make_unique<FixedAccumulation>(in, false); }, ProbeLevel::op),
            "");
  CommandResult d = trainrr("diff " + a + " " + b + " --json");
  ASSERT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "\"site\":\"batch_normalization_1/bn_stats.fwd:out\"")) << d.output;
  EXPECT_TRUE(has(d.output, "\"category\":\"numeric\"")) << d.output;
  EXPECT_TRUE(has(d.output, "a batch normalization's momentum changes only its moving statistics"))
      << d.output;
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
  // No run makes an order its own recorded draw does not give: replay, diff and bisect name the trace.
  EXPECT_TRUE(has(d.output, "B's trace: the recorded order is not the one its recorded draw gives"))
      << d.output;
  EXPECT_TRUE(has(d.output, "cause: trace: ")) << d.output;
  for (const char* force : {"", " --force none"}) {
    CommandResult r = trainrr("replay " + b + force);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(has(r.output, "diverged at step 15, input data/shuffle")) << r.output;
    EXPECT_TRUE(
        has(r.output, "cause: trace: epoch 2: the recorded order is not the one its recorded draw gives"))
        << r.output;
  }
  CommandResult bis = trainrr("bisect " + b);
  EXPECT_TRUE(has(bis.output, "epoch 2: the recorded order is not the one its recorded draw gives"))
      << bis.output;
}

// Draws one stream's words at another key from one draw on, as an edited trace holds, or a spliced one (one
// run's epoch 1, another seed's epoch 2).
class OtherKey : public ForwardingHooks {
 public:
  OtherKey(Hooks& in, std::string stream, int nth)
      : ForwardingHooks(in), stream_(std::move(stream)), nth_(nth) {}
  void rng_draw(RngDraw& d) override {
    in_.rng_draw(d);
    if (d.stream == stream_ && seen_++ >= nth_) d.key += 1;
  }

 private:
  std::string stream_;
  int nth_, seen_ = 0;
};

// A recorded draw whose key is not the one the trace's seed gives its stream was drawn by no run of the
// trace, even where its values are those of its key: replay (forced or free) and diff name the trace at that
// draw, not the random numbers or the loss after it, and bisect names it among the trace's suspects.
TEST_F(Scenario, ADrawOfAKeyTheSeedDoesNotGiveIsNamedAsTheTrace) {
  const std::string cfg = config(
      breast_cancer_config("seed = 6\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {}, a), "");
  ASSERT_EQ(
      record_via_api(cfg, {}, b, [](Hooks& in) { return std::make_unique<OtherKey>(in, "data/shuffle", 1); }),
      "");
  const std::string why = "is not the key the trace's seed gives stream data/shuffle (seed 6 gives it ";
  for (const char* force : {"", " --force none"}) {
    CommandResult r = trainrr("replay " + b + force);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(has(r.output, "diverged at step 15, input data/shuffle")) << r.output;
    EXPECT_TRUE(has(r.output, "cause: trace: draw at data/shuffle: the recorded key ")) << r.output;
    EXPECT_TRUE(has(r.output, why)) << r.output;
  }
  CommandResult d = trainrr("diff " + a + " " + b);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "cause: trace: draw at data/shuffle")) << d.output;
  EXPECT_TRUE(has(d.output, "B's trace: the recorded key ")) << d.output;
  EXPECT_TRUE(has(d.output, why)) << d.output;
  CommandResult bis = trainrr("bisect " + b);
  EXPECT_TRUE(has(bis.output, why)) << bis.output;
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
  EXPECT_TRUE(has(bis.output, "\"minimal_forced_choices\":\"loader\"")) << bis.output;
  EXPECT_TRUE(has(bis.output, "--force loader")) << bis.output;
  // A recording with the first-ready loader itself replays bit for bit with its batch order forced.
  const std::string c = dir.file("c.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + c).exit_code, 0);
  expect_reproduces(c);
  // A free replay of it matches the batch order only by chance: where it does, bisect says so.
  for (int i = 0; i < 3; ++i) {
    CommandResult lucky = trainrr("bisect " + c);
    if (lucky.exit_code == 0)
      EXPECT_TRUE(has(lucky.output,
                      "\nnote: the recording or this free replay decides choices by a race (loader): "
                      "this free replay matched the recording there by chance, and another may not; "
                      "`trainrr replay " +
                          c + " --force loader` serves them back\n"))
          << lucky.output;
    else
      EXPECT_TRUE(has(lucky.output, "\nminimal forced choices: loader\n")) << lucky.output;
  }
  // Bisect forces the racy batch order always, and finds that nothing else needs forcing. On a loaded
  // machine the first-ready loader hands out the batches in order, in the recording and in a free replay
  // alike; a recording whose first batch is the epoch's last is one that no free replay matches.
  const std::string racy = dir.file("racy.trr");
  ASSERT_EQ(record_via_api(cfg, {}, racy, [](Hooks& in) { return std::make_unique<LastBatchFirst>(in, 14); }),
            "");
  CommandResult real = trainrr("bisect " + racy + " --json");
  ASSERT_EQ(real.exit_code, 1) << real.output;
  EXPECT_TRUE(has(real.output, "\"minimal_forced_choices\":\"loader\"")) << real.output;
  EXPECT_TRUE(has(real.output, "\"racy_choices_always_forced\":\"loader\"")) << real.output;
  EXPECT_TRUE(has(real.output, "\"category\":\"loader\"")) << real.output;
  EXPECT_TRUE(has(real.output,
                  "no recorded choice but the racy ones needs forcing; bisect forces those always, "
                  "without trying whether each is needed"))
      << real.output;
}

TEST_F(Scenario, ALoaderThatTheReplaysSettingsMakeRacyIsAlwaysForcedInBisect) {
  // Recorded with an ordered loader; bisected with the settings under which a first-ready loader runs. Left
  // free in a trial, that loader matches the recording only by chance: it is forced in every trial, as a racy
  // choice of the recording would be, and named as such.
  const std::string cfg = config(
      breast_cancer_config("seed = 6\n", kBreastCancer, "", "", "threads = 2\npolicy = \"default\"\n"));
  const std::string d = dir.file("ordered.trr");
  ASSERT_EQ(record_via_api(cfg, {"runtime.policy=deterministic", "runtime.threads=1"}, d,
                           [](Hooks& in) { return std::make_unique<LastBatchFirst>(in, 14); }),
            "");
  CommandResult bis = trainrr("bisect " + d + " --set runtime.policy=default --set runtime.threads=2 --json");
  ASSERT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"minimal_forced_choices\":\"loader\"")) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"racy_choices_always_forced\":\"loader\"")) << bis.output;
  EXPECT_TRUE(has(bis.output, "always forced, as a free replay matches them only by chance: loader"))
      << bis.output;
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

// The replay command a bisection's result line offers, without "trainrr " (empty when it offers none).
std::string offered_replay(const std::string& output) {
  const size_t result = output.find("\nresult: ");
  if (result == std::string::npos) return "";
  const size_t open = output.find("`trainrr ", result);
  if (open == std::string::npos) return "";
  const size_t close = output.find('`', open + 1);
  return output.substr(open + 9, close - open - 9);
}

// The step a report's "reproduces through step: N" fact names (-1 when it has none).
int64_t reproduces_through(const std::string& output) {
  std::smatch m;
  static const std::regex re("\nreproduces through step: (\\d+)\n");
  return std::regex_search(output, m, re) ? std::stoll(m[1].str()) : -1;
}

// Another batch at step 0 and an extra augmentation draw at step 2: a free replay differs at step 0, where
// forcing the loader suffices, and the augmentation stream has to be forced too from step 2 on.
class OtherBatchThenExtraNoiseDraw : public ExtraNoiseDraw {
 public:
  using ExtraNoiseDraw::ExtraNoiseDraw;
  void batch_order(int64_t step, int64_t& b) override {
    if (step == 0) b = b + 1;
    in_.batch_order(step, b);
  }
};

// A checkpoint on the way is compared in every replay bisection makes, as replay compares it: where a
// configuration change shows first in a checkpoint's moving statistics (after a loader race the free replay
// differs at first), the result says the set reproduces up to that checkpoint, not to the run's end, and that
// every recorded choice forced differs there.
TEST_F(Scenario, BisectComparesTheCheckpointsOnTheWay) {
  std::string text = completion_order_config();
  text.replace(text.find("policy = \"default\""), 18, "policy = \"deterministic\"");
  const std::string cfg = config(text);
  const std::string b = dir.file("b.trr");
  ASSERT_EQ(
      record_via_api(
          cfg, {}, b, [](Hooks& in) { return std::make_unique<OtherBatch>(in, 0); }, ProbeLevel::step, 4),
      "");
  CommandResult bis = trainrr("bisect " + b + " --set model.layers[1].momentum=0.9");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output,
                  "with every recorded choice forced the run differs at the checkpoint at step 4, after "
                  "step 3, batch_normalization_1.moving_mean"))
      << bis.output;
  EXPECT_TRUE(has(bis.output, "\nreproduces through step: 2\n")) << bis.output;
  EXPECT_FALSE(has(bis.output, "the final state")) << bis.output;
}

// A difference that does not recur when its step is re-executed from the recorded state is not said to be a
// race where the replay's optimizer keeps state the recorded one has not (SGD given a momentum): that state
// is what the replay carried into the step.
TEST_F(Scenario, AnOptimizerStateTheRecordingLacksIsNamedWhereTheDifferenceDoesNotRecur) {
  const std::string cfg = config(
      breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(record_via_api(cfg, {"train.optimizer.type=\"sgd\""}, a, {}, ProbeLevel::op), "");
  CommandResult r = trainrr("replay " + a + " --set train.optimizer.momentum=0.9");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(
      has(r.output, "cause: config: the run configuration differs: train.optimizer.momentum: 0 -> 0.9"))
      << r.output;
  EXPECT_TRUE(has(r.output,
                  "did not recur, so no element values are given (it need not be a race: the replay's "
                  "optimizer keeps other state than the recorded one"))
      << r.output;
}

// A new run refuses a layer name a trace would read back as another layer or op ('.', ':', trainrr's own site
// words), naming the key; a trace recorded before, by a trainrr that took the name, still replays as it was.
TEST_F(Scenario, ALayerNameANewRunRefusesStillReplaysFromATraceRecordedBefore) {
  const std::string cfg = config(
      breast_cancer_config("seed = 4\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(record_via_api(cfg, {"model.layers[0].name=\"block1.dense\""}, a, {}, ProbeLevel::step, 0, false),
            "");
  CommandResult r = trainrr("replay " + a);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "reproduced bit for bit")) << r.output;
  const std::string b = dir.file("b.trr");
  CommandResult refused = trainrr("record " + cfg + " --set model.layers[0].name=\"block1.dense\" -o " + b);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(has(refused.output, "model.layers[0].name must not contain '/', '.' or ':'")) << refused.output;
  EXPECT_FALSE(std::filesystem::exists(b));
}

// At level layer a layer's input gradient (L:dx) is probed after the layer computed its own parameters'
// gradients: where a label nudged so little that the loss rounds the same makes dense_3:dx differ, dense_3's
// bias gradient, computed first, differs too and is the one named.
TEST_F(Scenario, AtLevelLayerALayersOwnGradientComesBeforeItsInputGradient) {
  const std::string data = dir.write("bcd.csv", read_file(kBreastCancer));
  std::string nudged = read_file(kBreastCancer);
  size_t at = 0;
  for (int line = 0; line < 530; ++line) at = nudged.find('\n', at) + 1;  // line 531: data row 529
  const size_t end = nudged.find('\n', at), comma = nudged.rfind(',', end);
  ASSERT_EQ(nudged.substr(comma + 1, end - comma - 1), "1");
  nudged.replace(comma + 1, end - comma - 1, "1.0000002");
  const std::string changed = dir.write("bcm.csv", nudged);
  const std::string cfg = config("seed = 42\n[data]\npath = \"" + data +
                                 "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"none\"\n"
                                 "[[model.layers]]\ntype = \"Dense\"\nunits = 8\nactivation = \"relu\"\n"
                                 "[[model.layers]]\ntype = \"Dense\"\nunits = 4\nactivation = \"tanh\"\n"
                                 "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
                                 "[train]\nepochs = 1\nbatch_size = 32\nshuffle = false\nloss = \"mse\"\n"
                                 "[train.optimizer]\ntype = \"sgd\"\nlearning_rate = 0.01\n"
                                 "[runtime]\nthreads = 2\npolicy = \"deterministic\"\n");
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(record_via_api(cfg, {}, a, {}, ProbeLevel::layer), "");
  CommandResult r = trainrr("replay " + a + " --data " + changed + " --allow-data-change");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 7, backward, dense_3 (dense_3.bias:grad)\n", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output, "computed before dense_3:dx, which differs too")) << r.output;
  EXPECT_TRUE(has(r.output, "cause: data: ")) << r.output;
}

// Bisection does not stop at the step where a free replay first differs: the set it names is replayed through
// the whole recording, and where it falls short the window grows. The command it offers reproduces.
TEST_F(Scenario, BisectChecksItsSetThroughTheWholeRecordingAndGrowsTheWindow) {
  const std::string cfg = config(breast_cancer_config(
      "seed = 7\n[augment]\nnoise_stddev = 0.05\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(cfg, {}, b, [](Hooks& in) { return std::make_unique<OtherBatchThenExtraNoiseDraw>(in); }),
            "");
  expect_reproduces(b);
  // Forcing the loader alone reproduces step 0, where a free replay first differs, and not the run.
  CommandResult loader_only = trainrr("replay " + b + " --force loader");
  ASSERT_EQ(loader_only.exit_code, 1) << loader_only.output;
  ASSERT_EQ(loader_only.output.rfind("diverged at step 2,", 0), 0u) << loader_only.output;

  CommandResult bis = trainrr("bisect " + b);
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\ndivergent step: 0\n")) << bis.output;
  EXPECT_TRUE(has(bis.output, "the window grows to steps 0..2")) << bis.output;
  EXPECT_TRUE(has(bis.output, "\nminimal forced choices: loader, rng:augment/noise\n")) << bis.output;
  EXPECT_TRUE(has(bis.output, "to reproduce bit for bit through step 29, the last recorded; `trainrr replay " + b +
                                  " --force rng,loader` does\n"))
      << bis.output;
  EXPECT_EQ(reproduces_through(bis.output), 29) << bis.output;
  const std::string offered = offered_replay(bis.output);
  CommandResult r = trainrr(offered);
  EXPECT_EQ(r.exit_code, 0) << offered << "\n" << r.output;
}

// Under a setting no recorded choice can undo (the portable policy's own exp and log), bisection says how far
// forcing reproduces and why no further, and the command it offers carries its --set and replays that far.
TEST_F(Scenario, BisectSaysHowFarForcingReproducesAndOffersItsOwnSettings) {
  const std::string cfg = config(breast_cancer_config("seed = 7\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string a = dir.file("a.trr");
  ASSERT_EQ(record_via_api(cfg, {"train.epochs=10"}, a, {}, ProbeLevel::step, 50), "");
  CommandResult forced = trainrr("replay " + a + " --set runtime.policy=portable --force all");
  ASSERT_EQ(forced.exit_code, 1) << forced.output;
  int64_t stop = -1;
  ASSERT_EQ(std::sscanf(forced.output.c_str(), "diverged at step %ld", &stop), 1) << forced.output;

  CommandResult bis = trainrr("bisect " + a + " --set runtime.policy=portable");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_FALSE(has(bis.output, "to reproduce bit for bit;")) << bis.output;
  EXPECT_TRUE(has(bis.output, "to reproduce bit for bit through step " + std::to_string(stop - 1) +
                                  "; with every recorded choice forced the run differs at step " +
                                  std::to_string(stop) + ","))
      << bis.output;
  EXPECT_EQ(reproduces_through(bis.output), stop - 1) << bis.output;
  const std::string offered = offered_replay(bis.output);
  EXPECT_TRUE(has(offered, " --set runtime.policy=portable")) << bis.output;
  EXPECT_TRUE(has(offered, " --to-step " + std::to_string(stop))) << bis.output;
  EXPECT_TRUE(has(bis.output, "\nreplay with: --force ")) << bis.output;
  CommandResult r = trainrr(offered);
  EXPECT_EQ(r.exit_code, 0) << offered << "\n" << r.output;
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
  // The first row is one the run tests on, under this seed's split: no value of any step differs.
  EXPECT_TRUE(has(r.output, "\"first_divergence\":null")) << r.output;
  EXPECT_TRUE(has(r.output, "no value of any step compared differs: the training read none of what differs"))
      << r.output;
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

// Both runs take their batches in order; one through the first-ready loader, one through the ordered one.
class InOrderWithLoader : public InOrderBatches {
 public:
  InOrderWithLoader(Hooks& in, std::string loader) : InOrderBatches(in), loader_(std::move(loader)) {}
  void kernel_selected(KernelChoice& c) override {
    if (c.site == "data/loader") c.chosen = loader_;
    in_.kernel_selected(c);
  }

 private:
  std::string loader_;
};

TEST_F(Scenario, IdenticalRunsThroughOtherKernelsAreNotSaidToHaveMadeTheSameChoices) {
  const std::string cfg = config(breast_cancer_config("seed = 9\n", kBreastCancer, "", "", "threads = 2\n"));
  const std::string a = dir.file("first_ready.trr"), b = dir.file("ordered.trr");
  ASSERT_EQ(record_via_api(
                cfg, {}, a,
                [](Hooks& in) { return std::make_unique<InOrderWithLoader>(in, "loader__first_ready"); }),
            "");
  ASSERT_EQ(
      record_via_api(cfg, {}, b,
                     [](Hooks& in) { return std::make_unique<InOrderWithLoader>(in, "loader__ordered"); }),
      "");
  CommandResult d = trainrr("diff " + a + " " + b);
  EXPECT_EQ(d.exit_code, 0) << d.output;
  EXPECT_TRUE(
      has(d.output, "identical: the two runs computed the same bits, with other kernels at some sites"))
      << d.output;
  EXPECT_TRUE(
      has(d.output, "the kernel selections differ (data/loader: loader__first_ready vs loader__ordered)"))
      << d.output;
  EXPECT_FALSE(has(d.output, "made the same choices")) << d.output;
}

TEST_F(Scenario, KernelSelectionsThatDifferAtLevelStepComeWithTheInstructionSets) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU has only the generic instruction set";
  const std::string cfg = config(breast_cancer_config("seed = 9\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string trace = dir.file("step.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  CommandResult r =
      run_trainrr_env("TRAINRR_ISA=generic", "replay " + trace + " --force rng,split,shuffle,loader");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cause: kernel: kernel selections differ: ")) << r.output;
  EXPECT_TRUE(has(r.output, std::string("; instruction set ") + isa_name(detect_isa()) + " vs generic"))
      << r.output;
}

TEST_F(Scenario, ARecordedBatchThatTheReplayedEpochLacksIsALoaderDivergenceNotACrash) {
  const std::string cfg = config(breast_cancer_config("seed = 9\n", kBreastCancer, "", "", "threads = 1\n"));
  const std::string trace = dir.file("batches.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  // 455 training rows: 15 batches of 32 recorded, 4 of 128 replayed. Going on past the first divergence
  // reaches recorded batches the replayed epochs do not have.
  CommandResult r = trainrr("replay " + trace + " --set train.batch_size=128 --keep-going");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_FALSE(has(r.output, "internal check failed")) << r.output;
  EXPECT_TRUE(has(r.output, "cause: config: the run configuration differs: train.batch_size: 32 -> 128"))
      << r.output;
  // 2 epochs of 4 steps of 128 against the trace's 2 of 15 steps of 32: the rest of the trace is not
  // compared, and the report says so.
  EXPECT_TRUE(has(r.output,
                  "the replay stops first, at the end of its 8 steps: the trace's steps from step 8 on "
                  "are not compared"))
      << r.output;
  // Forcing only the loader, the first recorded batch past 3 is the first divergence.
  CommandResult loader =
      trainrr("replay " + trace + " --set train.batch_size=128 --force loader --keep-going --json");
  EXPECT_EQ(loader.exit_code, 1) << loader.output;
  EXPECT_FALSE(has(loader.output, "internal check failed")) << loader.output;
}

TEST_F(Scenario, AnotherEpochCountExplainsNoDivergenceInTheStepsBothRan) {
  const std::string cfg = config(
      breast_cancer_config("seed = 9\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string two = dir.file("two.trr"), three = dir.file("three.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + two).exit_code, 0);
  ASSERT_EQ(trainrr("record " + cfg + " -o " + three + " --set train.epochs=3").exit_code, 0);
  // Every value both runs hold is the same; the runs differ in their inputs, and one has more steps.
  CommandResult d = trainrr("diff " + three + " " + two);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_EQ(
      d.output.rfind("diverged in the inputs only: no value compared differs (30 steps compared)\n"
                     "  cause: config: the run configuration differs: train.epochs: 3 -> 2, which changes "
                     "how many steps run, not what a step computes: B ends first, after 30 steps",
                     0),
      0u)
      << d.output;
  // A difference within the steps is then named for what it is, not blamed on the epoch count.
  if (detect_isa() < Isa::avx2) return;
  const std::string generic = dir.file("generic.trr");
  CommandResult rec =
      run_trainrr_env("TRAINRR_ISA=generic", "record " + cfg + " -o " + generic + " --level op");
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  CommandResult r = trainrr("replay " + generic + " --set train.epochs=3 --force rng,split,shuffle,loader");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cause: kernel: a different kernel ran at")) << r.output;
  EXPECT_TRUE(has(r.output, "train.epochs: 2 -> 3), which changes how many steps run")) << r.output;
  CommandResult d3 = trainrr("diff " + three + " " + generic);
  EXPECT_EQ(d3.exit_code, 1) << d3.output;
  EXPECT_FALSE(has(d3.output, "cause: config")) << d3.output;
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
  // Its first stage, which runs nothing, names such a kernel as the first suspect of its step.
  EXPECT_TRUE(has(bisect_here.output, "first suspect step 0: kernel ")) << bisect_here.output;
  EXPECT_TRUE(has(bisect_here.output, ", which this process does not run (generic)")) << bisect_here.output;
  CommandResult r = run_trainrr_env("TRAINRR_ISA=generic", "replay " + a + " --force rng,split,shuffle,loader --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"kernel\"")) << r.output;
  EXPECT_TRUE(has(r.output, "\"key\":\"isa\"")) << r.output;
  CommandResult bis = trainrr("bisect " + b + " --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"minimal_forced_choices\":\"kernel:")) << bis.output;
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

// The cells of one row of an HTML report's divergence map, from their titles ("SITE, steps 3-7: same bits"):
// step -> what the cell says.
std::map<int64_t, std::string> divergence_map_row(const std::string& page, const std::string& site) {
  const std::regex cell("<title>" + std::regex_replace(site, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                        R"(, steps? (\d+)(?:-(\d+))?: ([^<]+)</title>)");
  std::map<int64_t, std::string> row;
  for (std::sregex_iterator it(page.begin(), page.end(), cell), end; it != end; ++it) {
    const int64_t from = std::stoll((*it)[1].str());
    const int64_t to = (*it)[2].matched ? std::stoll((*it)[2].str()) : from;
    for (int64_t s = from; s <= to; ++s) row[s] = (*it)[3].str();
  }
  return row;
}

// Two recordings whose batch-normalization sums were added in different orders, at level layer: diff's page
// maps, step by step, the tensors that differ, beginning with the one the text names first.
TEST_F(Scenario, DiffHtmlMarksTheLayersThatDifferStepByStep) {
  const std::string cfg = config(completion_order_config());
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr"), html = dir.file("d.html");
  ASSERT_EQ(record_via_api(
                cfg, {}, a, [](Hooks& in) { return std::make_unique<FixedAccumulation>(in, true); },
                ProbeLevel::layer),
            "");
  ASSERT_EQ(record_via_api(
                cfg, {}, b, [](Hooks& in) { return std::make_unique<FixedAccumulation>(in, false); },
                ProbeLevel::layer),
            "");
  CommandResult d = trainrr("diff " + a + " " + b + " --html " + html);
  ASSERT_EQ(d.exit_code, 1) << d.output;
  std::smatch first;
  ASSERT_TRUE(std::regex_search(d.output, first, std::regex(R"(diverged at step (\d+), \w+, \w+[^\n]*\(([^()\s]+)\))")))
      << d.output;
  const int64_t step = std::stoll(first[1].str());
  const std::string site = first[2].str();
  const std::string page = read_file(html);
  // The site's row: one cell per step, the same bits before the first divergent step, a difference at it.
  const std::map<int64_t, std::string> row = divergence_map_row(page, site);
  ASSERT_GT(static_cast<int64_t>(row.size()), step) << site << ": " << page;
  for (int64_t s = 0; s < step; ++s) EXPECT_EQ(row.at(s), "same bits") << "step " << s;
  EXPECT_EQ(row.at(step).rfind("differs", 0), 0u) << "step " << step << ": " << row.at(step);
  EXPECT_TRUE(has(page, "<title>first divergence: " + site + ", step " + std::to_string(step) + "</title>")) << page;
  // The loss curves, over every step of the run.
  const int64_t last = row.rbegin()->first;
  EXPECT_TRUE(has(page, "aria-label=\"loss per step, steps 0 to " + std::to_string(last) + "\"")) << page;
  expect_exact_losses(d.output, last, a, "A", b, "B");
  // bisect keeps no per-step series: its page says so rather than that nothing differed.
  CommandResult bis = trainrr("bisect " + a + " --html " + dir.file("b.html"));
  const std::string bisect_page = read_file(dir.file("b.html"));
  EXPECT_TRUE(has(bisect_page, "Not computed by trainrr bisect")) << bis.output << bisect_page;
  EXPECT_FALSE(has(bisect_page, "same bits</title>")) << bisect_page;
  // What bisect found on the way, as the terminal says it: every stage line and the result, on the page.
  size_t stages = 0;
  std::istringstream lines(bis.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("stage ", 0) != 0 && line.rfind("result: ", 0) != 0) continue;
    ++stages;
    const std::string start = line.substr(0, std::min<size_t>(30, line.find_first_of("`<>&\"'")));
    EXPECT_TRUE(has(bisect_page, "<li>" + start) || has(bisect_page, "<li class=\"result\">" + start))
        << line << "\n"
        << bisect_page;
  }
  EXPECT_GE(stages, 2u) << bis.output;
  // The whole environment, recorded and here, as a replay's page has it, not only the keys that differ.
  EXPECT_TRUE(std::regex_search(bisect_page, std::regex(R"(\d+ of \d+ recorded keys differ)")))
      << bisect_page;
}

// Which side stops first, when the replayed configuration runs for another number of steps than the
// recording: the steps the other side lacks are not compared, and the note says whose they are.
TEST_F(Scenario, ReplayOfAnotherLengthSaysWhichSideStopsFirst) {
  const std::string cfg = config(
      breast_cancer_config("seed = 2\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + trace).exit_code, 0);  // 2 epochs of 15 steps
  CommandResult shorter = trainrr("replay " + trace + " --set train.epochs=1");
  EXPECT_EQ(shorter.exit_code, 0) << shorter.output;
  EXPECT_TRUE(has(shorter.output,
                  "the replay stops first, at the end of its 15 steps: the trace's steps from step "
                  "15 on are not compared"))
      << shorter.output;
  EXPECT_FALSE(has(shorter.output, "past the trace's end")) << shorter.output;
  CommandResult longer = trainrr("replay " + trace + " --set train.epochs=3");
  EXPECT_EQ(longer.exit_code, 0) << longer.output;
  EXPECT_TRUE(
      has(longer.output, "the trace stops first: the replay's steps from step 30 on are not compared"))
      << longer.output;
}

// Configuration values print as written, not with the digits a double adds (0.20000000000000001).
TEST_F(Scenario, ConfigurationDifferencePrintsNumbersAsWritten) {
  const std::string cfg = config(
      breast_cancer_config("seed = 2\n", kBreastCancer, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a).exit_code, 0);
  ASSERT_EQ(trainrr("record " + cfg + " -o " + b + " --set data.test_fraction=0.3").exit_code, 0);
  CommandResult d = trainrr("diff " + a + " " + b);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "data.test_fraction: 0.2 -> 0.3")) << d.output;
}

// A trace that holds its data (--embed-data, as every recording from Python does) gives the element as one
// that does not: the recorded side is set up again from the embedded files, beside the replay's own copies.
TEST_F(Scenario, ATraceWithItsDataEmbeddedGivesTheFirstDifferingElement) {
  const std::string csv = dir.file("bc.csv");
  std::filesystem::copy_file(kBreastCancer, csv);
  const std::string cfg =
      config(breast_cancer_config("seed = 12\n", csv, "", "", "threads = 1\npolicy = \"deterministic\"\n"));
  const std::string a = dir.file("embedded.trr");
  ASSERT_EQ(trainrr("record " + cfg + " -o " + a + " --embed-data --level layer").exit_code, 0);
  const CommandResult r = trainrr("replay " + a + " --set train.optimizer.learning_rate=0.002");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\n  first differing element: ")) << r.output;
  EXPECT_FALSE(has(r.output, "no element detail")) << r.output;
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
  // Cut in the middle of step 0's message (after the initial checkpoint): nothing to compare.
  uint64_t step0_offset = 0, step0_size = 0;
  {
    auto reader = trace::TraceReader::open(a);
    ASSERT_TRUE(reader) << reader.error().message;
    for (;;) {
      auto m = (*reader)->next();
      ASSERT_TRUE(m && m->has_value());
      if (std::holds_alternative<trace::TraceStep>((*m)->value)) {
        step0_offset = (*m)->offset;
        step0_size = (*m)->size;
        break;
      }
    }
  }
  const std::string cut = dir.file("cut.trr");
  std::filesystem::copy_file(a, cut);
  std::filesystem::resize_file(cut, step0_offset + step0_size / 2);
  CommandResult t = trainrr("replay " + cut);
  EXPECT_EQ(t.exit_code, 2) << t.output;
  EXPECT_TRUE(has(t.output, cut + ": the trace holds no complete step")) << t.output;
  // Changed in step 0's message instead: damage, which the steps after it do not outweigh.
  const std::string changed = dir.file("changed.trr");
  {
    std::string bytes = read_file(a);
    bytes[step0_offset + step0_size / 2] = static_cast<char>(bytes[step0_offset + step0_size / 2] ^ 0x10);
    std::ofstream(changed, std::ios::binary) << bytes;
  }
  CommandResult damaged = trainrr("replay " + changed);
  EXPECT_EQ(damaged.exit_code, 2) << damaged.output;
  EXPECT_TRUE(
      has(damaged.output,
          changed + ": no complete step can be read: the trace is damaged before its first step ends"))
      << damaged.output;
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
