// The cause named for a numeric divergence when the two sides' OpenBLAS ran different code, and how the
// environment differences name a value that one side lacks.

#include "replayer/cause.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/kernels/kernel_registry.h"
#include "replayer/diff.h"
#include "replayer/replayer.h"

namespace trainrr {
namespace {

FirstDivergence layer_output_differs() {
  FirstDivergence d;
  d.step = 0;
  d.phase = "forward";
  d.kind = "probe";
  d.site = "dense_1:out";
  d.layer = "dense_1";
  return d;
}

CauseInputs openblas_cores(const std::string& a, const std::string& b, std::string name_a = "recorded",
                           std::string name_b = "replayed") {
  CauseInputs in;
  in.name_a = std::move(name_a);
  in.name_b = std::move(name_b);
  in.environment.push_back({"lib.openblas", "OpenBLAS 0.3.21 core=" + a + " threads=2",
                            "OpenBLAS 0.3.21 core=" + b + " threads=2"});
  in.environment.push_back({"cpu.model", "AMD EPYC", "Intel(R) Xeon(R) Processor"});
  return in;
}

TEST(Cause, OpenblasCodeDifferenceIsNamedWhenTheRunUsedOpenblas) {
  CauseInputs in = openblas_cores("Cooperlake", "Prescott");
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}, {"loss/mean", "f32_sum__cpu_pairwise"}};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_EQ(c.category, "numeric");
  EXPECT_NE(c.detail.find("OpenBLAS ran its Cooperlake code (recorded) and its Prescott code (replayed)"),
            std::string::npos)
      << c.detail;
}

// Where the instruction sets differ, trainrr itself set OPENBLAS_CORETYPE (TRAINRR_ISA): the cause says so
// rather than point at a variable the user did not set.
TEST(Cause, OpenblasCodeUnderAnotherInstructionSetSaysTrainrrSetTheCoreType) {
  CauseInputs in = openblas_cores("SkylakeX", "Haswell");
  in.environment.push_back({"isa", "avx512", "avx2"});
  in.environment.push_back({"env.TRAINRR_ISA", "(unset)", "avx2"});
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_NE(
      c.detail.find("it picks its code for the CPU it loads on, or the one OPENBLAS_CORETYPE names; the "
                    "instruction sets differ (avx512 vs avx2), and trainrr sets OPENBLAS_CORETYPE to keep "
                    "OpenBLAS within TRAINRR_ISA"),
      std::string::npos)
      << c.detail;
}

// On a CPU that lacks the recording's instruction set, with no TRAINRR_ISA on either side, OpenBLAS picked
// its own code: nothing of trainrr's set OPENBLAS_CORETYPE, and the cause does not say it did.
TEST(Cause, OpenblasCodeOnAnOlderCpuDoesNotClaimTrainrrSetTheCoreType) {
  CauseInputs in = openblas_cores("SkylakeX", "Haswell");
  in.environment.push_back({"isa", "avx512", "avx2"});
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_NE(c.detail.find("the instruction sets differ (avx512 vs avx2)"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("TRAINRR_ISA"), std::string::npos) << c.detail;
}

// The instruction sets are named beside kernels that differ only where they can have decided them: a kernel
// of one side that the other side's instruction set cannot run. Two AVX2 kernels, one of them picked for the
// thread count, are the threads' doing.
TEST(Cause, TheInstructionSetIsNamedOnlyWhereItCanHaveDecidedTheKernels) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  CauseInputs in;
  in.registry = &registry;
  in.environment = {{"isa", "avx512", "avx2"}, {"threads", "2", "1"}};
  FirstDivergence d = divergence(0, "backward", "probe", "dense_3/matmul.bwd_weight:out");
  d.kernel_recorded = "f32_matmul__cpu_splitk_threads_avx2";
  d.kernel_replayed = "f32_matmul__cpu_blocked_avx2";
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "kernel") << c.detail;
  EXPECT_NE(c.detail.find("; threads 2 vs 1"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("instruction set"), std::string::npos) << c.detail;
  // An AVX-512 kernel against a generic one: the instruction set decided it, and the thread count, which
  // picks no blocked kernel, is not named beside them.
  d.kernel_recorded = "f32_matmul__cpu_blocked_avx512";
  d.kernel_replayed = "f32_matmul__cpu_blocked_generic";
  c = classify(d, in);
  EXPECT_NE(c.detail.find("; instruction set avx512 vs avx2"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("threads"), std::string::npos) << c.detail;
  // An AVX-512 kernel against a split-K one: the instruction set and the thread count each can have decided
  // it.
  d.kernel_replayed = "f32_matmul__cpu_splitk_threads_avx2";
  c = classify(d, in);
  EXPECT_NE(c.detail.find("; instruction set avx512 vs avx2; threads 2 vs 1"), std::string::npos) << c.detail;
}

// At level op the ops before the first that differs computed the same outputs: a kernel selection that
// differs at the layer's matmul, which compared the same, is no cause of a difference at its activation (the
// portable policy's own tanh, here).
TEST(Cause, AtLevelOpAKernelOfAnOpThatComparedTheSameIsNoCause) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  CauseInputs in;
  in.registry = &registry;
  in.outputs_compared = in.op_outputs_compared = true;
  in.environment = {{"policy", "deterministic", "portable"}};
  in.kernel_differences = {
      {"dense_1/matmul.fwd", {"f32_matmul__cpu_blocked_avx2", "f32_matmul__cpu_portable"}}};
  FirstDivergence d = divergence(0, "forward", "probe", "dense_1/tanh.fwd:out");
  d.layer = "dense_1";
  d.op = "tanh.fwd";
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "numeric") << c.detail;
  EXPECT_NE(c.detail.find("under portable the activations"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("dense_1/matmul.fwd"), std::string::npos) << c.detail;
  // At level layer the matmul's output was not compared: its kernel can have made the layer's output differ.
  in.op_outputs_compared = false;
  d = divergence(0, "forward", "probe", "dense_1:out");
  d.layer = "dense_1";
  c = classify(d, in);
  EXPECT_EQ(c.category, "kernel") << c.detail;
}

// OpenBLAS's code and the thread count both differ at an OpenBLAS matmul: the code makes other numbers
// whatever the threads, and is named first, the thread count beside it.
TEST(Cause, OpenblasCodeIsNamedBeforeAThreadCountThatDiffersToo) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  if (!registry.find("f32_matmul__openblas_sgemm")) GTEST_SKIP() << "OpenBLAS does not run here";
  CauseInputs in = openblas_cores("SkylakeX", "Haswell");
  in.registry = &registry;
  in.environment.push_back({"threads", "2", "1"});
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}};
  FirstDivergence d = divergence(0, "forward", "probe", "dense_1/matmul.fwd:out");
  d.kernel_recorded = d.kernel_replayed = "f32_matmul__openblas_sgemm";
  const Cause c = classify(d, in);
  EXPECT_EQ(c.category, "numeric") << c.detail;
  EXPECT_NE(c.detail.find("OpenBLAS ran its SkylakeX code (recorded) and its Haswell code (replayed)"),
            std::string::npos)
      << c.detail;
  EXPECT_NE(c.detail.find("; the thread count differs too (2 vs 1)"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("its result depends on the thread count"), std::string::npos) << c.detail;
}

// OpenBLAS's code is named beside kernels that differ only at sites that run before the first difference:
// not at a dense layer's matmuls after the convolution that differs first.
TEST(Cause, OpenblasCodeAtSitesAfterTheFirstDifferenceIsNotNamed) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  CauseInputs in = openblas_cores("SkylakeX", "Prescott");
  in.registry = &registry;
  in.layer_names = {"conv2d_1", "flatten_1", "dense_1"};
  in.outputs_compared = true;
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"},
                {"conv2d_1/conv2d.fwd", "f32_conv2d_fwd__cpu_im2col_avx2"}};
  FirstDivergence d = divergence(0, "forward", "probe", "conv2d_1/conv2d.fwd:out");
  d.kernel_recorded = "f32_conv2d_fwd__cpu_im2col_avx2";
  d.kernel_replayed = "f32_conv2d_fwd__cpu_im2col_generic";
  for (const bool op_level : {false, true}) {
    in.op_outputs_compared = op_level;
    const Cause c = classify(d, in);
    EXPECT_EQ(c.category, "kernel") << c.detail;
    EXPECT_EQ(c.detail.find("OpenBLAS"), std::string::npos) << c.detail;
  }
}

// At level step no op's output was compared: sums in completion order that combined their partials in other
// orders are named beside the kernel selections that differ, as either can have made the difference.
TEST(Cause, AtLevelStepOrdersThatDifferAreNamedBesideKernelSelections) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  CauseInputs in;
  in.registry = &registry;
  in.environment = {{"isa", "avx512", "avx2"}};
  in.kernel_differences = {
      {"dense_1/matmul.fwd", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__cpu_blocked_generic"}}};
  in.order_differences = {{"batch_normalization_1/bn_stats.fwd", 0}};
  FirstDivergence d = divergence(0, "update", "step_end", "(all parameters)");
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "kernel") << c.detail;
  EXPECT_NE(c.detail.find("combined their partials in different orders too, at "
                          "batch_normalization_1/bn_stats.fwd (step 0), which can have made it as well"),
            std::string::npos)
      << c.detail;
  in.outputs_compared = true;
  c = classify(d, in);
  EXPECT_EQ(c.detail.find("different orders too"), std::string::npos) << c.detail;
  // Kernels of the same bits (an AVX-512 kernel that gives the AVX2 kernel's) change no number: the orders
  // are the cause.
  in.outputs_compared = false;
  in.kernel_differences = {
      {"dense_1/matmul.fwd", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__cpu_blocked_avx2"}}};
  c = classify(d, in);
  EXPECT_EQ(c.category, "numeric") << c.detail;
  EXPECT_NE(c.detail.find("combined their partials in different orders"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("dense_1/matmul.fwd"), std::string::npos) << c.detail;
}

// A data-parallel step's parameters are compared after every allreduce call of the step, which matched where
// they differ first: the allreduce variant is no cause of them, and the note says why.
TEST(Cause, AnAllreduceVariantDoesNotReachParametersAfterAllreduceCallsThatMatched) {
  const FirstDivergence params = divergence(0, "update", "step_end", "parameters");
  EXPECT_FALSE(difference_reaches("distributed.allreduce: auto -> trainrr_exact", params, {}));
  EXPECT_TRUE(difference_reaches("train.optimizer.learning_rate: 0.002 -> 0.003", params, {}));
  EXPECT_NE(
      reach_words({"distributed.allreduce: auto -> trainrr_exact"}, params)
          .find("and every allreduce call of the step gave the recorded sum: the update that differs took "
                "the same sums"),
      std::string::npos);
  EXPECT_TRUE(difference_reaches("distributed.allreduce: auto -> trainrr_exact",
                                 divergence(0, "allreduce", "collective", "allreduce/bucket_0"), {}));
}

// Kernels picked by timing (autotune) were measured on each side's threads: the thread count is named beside
// them even where neither kernel's bits depend on it.
TEST(Cause, TheThreadCountIsNamedBesideKernelsPickedByTiming) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  CauseInputs in;
  in.registry = &registry;
  in.environment = {{"threads", "2", "1"}};
  in.kernel_picks = {{"dense_1/matmul.fwd",
                      {"picked f32_matmul__cpu_blocked_avx2 by timing (autotune): 1.2 us",
                       "picked f32_matmul__cpu_blocked_generic by timing (autotune): 2.0 us"}}};
  FirstDivergence d = divergence(0, "forward", "probe", "dense_1/matmul.fwd:out");
  d.kernel_recorded = "f32_matmul__cpu_blocked_avx2";
  d.kernel_replayed = "f32_matmul__cpu_blocked_generic";
  Cause c = classify(d, in);
  EXPECT_NE(c.detail.find("; threads 2 vs 1"), std::string::npos) << c.detail;
  in.kernel_picks.clear();
  c = classify(d, in);
  EXPECT_EQ(c.detail.find("threads"), std::string::npos) << c.detail;
}

// Where the replay ran its own kernel at every site the recording ran OpenBLAS (OPENBLAS_CORETYPE naming code
// this CPU cannot run), OpenBLAS's code made no number of the replay: the cause does not say it ran.
TEST(Cause, OpenblasLeftOutOnOneSideIsNotSaidToHaveRunThere) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  CauseInputs in = openblas_cores("SkylakeX", "Haswell");
  in.registry = &registry;
  in.environment.push_back({"isa", "avx512", "generic"});
  in.kernels = {{"dense_2/matmul.fwd", "f32_matmul__openblas_sgemm"},
                {"dense_2/matmul.bwd_weight", "f32_matmul__openblas_sgemm"}};
  in.kernel_differences = {
      {"dense_2/matmul.fwd", {"f32_matmul__openblas_sgemm", "f32_matmul__cpu_blocked_generic"}},
      {"dense_2/matmul.bwd_weight", {"f32_matmul__openblas_sgemm", "f32_matmul__cpu_blocked_generic"}}};
  FirstDivergence d = divergence(0, "forward", "probe", "dense_2/matmul.fwd:out");
  d.kernel_recorded = "f32_matmul__openblas_sgemm";
  d.kernel_replayed = "f32_matmul__cpu_blocked_generic";
  const Cause c = classify(d, in);
  EXPECT_EQ(c.category, "kernel") << c.detail;
  EXPECT_EQ(c.detail.find("OpenBLAS ran"), std::string::npos) << c.detail;
}

// A loader that differs with the thread count (the default policy's first-ready loader with several threads):
// the cause names the threads, and that the first side's order was a race.
TEST(Cause, ALoaderThatDiffersWithTheThreadCountNamesTheThreads) {
  CauseInputs in;
  in.environment = {{"threads", "2", "1"}};
  in.kernel_differences = {{"data/loader", {"loader__first_ready", "loader__ordered"}}};
  FirstDivergence d =
      divergence(10, "input", "loader", "data/loader", "step 10: recorded batch 11, replayed batch 10");
  const Cause c = classify(d, in);
  EXPECT_EQ(c.category, "loader") << c.detail;
  EXPECT_NE(
      c.detail.find("; loader loader__first_ready (recorded), loader__ordered (replayed); threads 2 vs 1; a "
                    "first-ready loader hands out batches in the order its workers finish, so the recorded "
                    "order was a race"),
      std::string::npos)
      << c.detail;
}

// A loader race on the second side (A ordered, B first-ready) is named as B's, as the first side's would be.
TEST(Cause, ALoaderRaceIsNamedOnWhicheverSideRanIt) {
  CauseInputs in;
  in.name_a = "A";
  in.name_b = "B";
  in.environment = {{"threads", "1", "2"}};
  in.kernel_differences = {{"data/loader", {"loader__ordered", "loader__first_ready"}}};
  const Cause c = classify(divergence(3, "input", "loader", "data/loader", "batch 3 (A), batch 4 (B)"), in);
  EXPECT_NE(c.detail.find("; threads 1 vs 2; a first-ready loader hands out batches in the order its workers "
                          "finish, so the B order was a race"),
            std::string::npos)
      << c.detail;
}

// The user's own OPENBLAS_CORETYPE beside TRAINRR_ISA: trainrr left it as it was, and the cause does not say
// trainrr set it.
TEST(Cause, AUsersOwnOpenblasCoreTypeIsNotSaidToBeTrainrrs) {
  CauseInputs in = openblas_cores("SkylakeX", "Nehalem");
  in.environment.push_back({"isa", "avx512", "avx2"});
  in.environment.push_back({"env.TRAINRR_ISA", "(unset)", "avx2"});
  in.environment.push_back({"env.OPENBLAS_CORETYPE", "(unset)", "Nehalem"});
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_NE(c.detail.find("the instruction sets differ (avx512 vs avx2)"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("trainrr sets OPENBLAS_CORETYPE"), std::string::npos) << c.detail;
}

// Kernels that differ beside OpenBLAS running other code at another site: both are named, as either can have
// made the parameters differ.
TEST(Cause, OpenblasCodeIsNamedBesideKernelsThatDiffer) {
  CauseInputs in = openblas_cores("SkylakeX", "Haswell");
  in.environment.push_back({"isa", "avx512", "avx2"});
  in.kernels = {{"dense_1/matmul.bwd_weight", "f32_matmul__openblas_sgemm"},
                {"dense_1/matmul.bwd_data", "f32_matmul__cpu_blocked_avx512"}};
  in.kernel_differences = {
      {"dense_1/matmul.bwd_data", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__cpu_blocked_avx2"}}};
  const Cause c = classify(divergence(0, "update", "step_end", "parameters"), in);
  EXPECT_EQ(c.category, "kernel") << c.detail;
  EXPECT_NE(c.detail.find(
                "dense_1/matmul.bwd_data: f32_matmul__cpu_blocked_avx512 vs f32_matmul__cpu_blocked_avx2"),
            std::string::npos)
      << c.detail;
  EXPECT_NE(c.detail.find("; OpenBLAS ran its SkylakeX code (recorded) and its Haswell code (replayed) at "
                          "dense_1/matmul.bwd_weight"),
            std::string::npos)
      << c.detail;
}

TEST(Cause, DiffNamesTheSidesAAndB) {
  CauseInputs in = openblas_cores("Haswell", "SkylakeX", "A", "B");
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}};
  FirstDivergence d = layer_output_differs();
  d.kernel_recorded = d.kernel_replayed = "f32_matmul__openblas_sgemm";
  const Cause c = classify(d, in);
  EXPECT_NE(c.detail.find("same kernel f32_matmul__openblas_sgemm"), std::string::npos) << c.detail;
  EXPECT_NE(c.detail.find("its Haswell code (A) and its SkylakeX code (B)"), std::string::npos) << c.detail;
}

TEST(Cause, OpenblasIsNotBlamedForARunThatNeverCalledIt) {
  CauseInputs in = openblas_cores("Cooperlake", "Prescott");
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__cpu_blocked_avx2"}};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_EQ(c.category, "numeric");
  EXPECT_EQ(c.detail.find("OpenBLAS ran"), std::string::npos) << c.detail;
  // Its code and its variables could make no number differ: the environment that may is listed.
  in.environment.push_back({"env.OPENBLAS_CORETYPE", "(unset)", "Haswell"});
  const Cause again = classify(layer_output_differs(), in);
  EXPECT_NE(again.detail.find("the environment differs in cpu.model"), std::string::npos) << again.detail;
  EXPECT_EQ(again.detail.find("OPENBLAS"), std::string::npos) << again.detail;
  EXPECT_EQ(again.detail.find("lib.openblas"), std::string::npos) << again.detail;
}

TEST(Cause, SameOpenblasCodeOnBothSidesIsNotTheCause) {
  CauseInputs in = openblas_cores("Haswell", "Haswell");
  in.environment[0].replayed = "OpenBLAS 0.3.21 core=Haswell threads=16";
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__openblas_sgemm"}};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_EQ(c.detail.find("OpenBLAS ran"), std::string::npos) << c.detail;
}

// Two runs of other data and another configuration: the data is named first, and the configuration too.
TEST(Cause, ADataDifferenceDoesNotHideTheConfigurationsDifferences) {
  CauseInputs in;
  in.data_changed = true;
  in.data_detail = "data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 20 bytes)";
  in.config_differences = {"train.batch_size: 32 -> 16", "model.loss: mse -> binary_crossentropy"};
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_EQ(c.category, "data");
  EXPECT_EQ(
      c.detail,
      "data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 20 bytes); the copies were not compared row by "
      "row, so which step first reads a row that differs is not known; the run configuration differs too: "
      "train.batch_size: 32 -> 16; model.loss: mse -> "
      "binary_crossentropy");
  // Two models differ in dozens of keys: the first eight, and how many more.
  in.config_differences.clear();
  for (int i = 0; i < 10; ++i) in.config_differences.push_back("k" + std::to_string(i) + ": 0 -> 1");
  EXPECT_EQ(
      classify(layer_output_differs(), in).detail,
      "data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 20 bytes); the copies were not compared row by "
      "row, so which step first reads a row that differs is not known; the run configuration differs too: "
      "k0: 0 -> 1; k1: 0 -> 1; k2: 0 -> 1; k3: 0 -> 1; k4: 0 -> 1; "
      "k5: 0 -> 1; k6: 0 -> 1; k7: 0 -> 1; and 2 more");
  in.config_differences.clear();
  EXPECT_EQ(classify(layer_output_differs(), in).detail,
            "data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 20 bytes); the copies were not compared "
            "row by row, so which step first reads a row that differs is not known");
}

FirstDivergence event(const std::string& phase, const std::string& kind, const std::string& site,
                      const std::string& layer = "") {
  FirstDivergence d;
  d.step = 0;
  d.phase = phase;
  d.kind = kind;
  d.site = site;
  d.layer = layer;
  return d;
}

// Data that differs is named the cause only of what it can change: not a draw's key when the seeds differ,
// not which batch a first-ready loader (or another loader) hands out, not an update whose gradients matched.
TEST(Cause, DataThatCannotHaveMadeTheFirstDifferenceIsNamedBesideTheCause) {
  CauseInputs in;
  in.name_a = "A";
  in.name_b = "B";
  in.data_changed = true;
  in.data_detail = "data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 10 bytes)";
  const std::string beside =
      "; the data differs too, but cannot have made this difference (which batch a loader hands out next "
      "does "
      "not depend on what the rows hold): data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 10 bytes)";
  // The same first-ready loader on both sides: its race.
  in.kernels = {{"data/loader", "loader__first_ready"}};
  FirstDivergence loader = event("input", "loader", "data/loader");
  loader.detail = "batch 2 (A), batch 4 (B)";
  Cause c = classify(loader, in);
  EXPECT_EQ(c.category, "loader");
  EXPECT_EQ(c.detail,
            "batch 2 (A), batch 4 (B); a first-ready loader hands out batches in the order its "
            "workers finish" +
                beside);
  // Two different loaders.
  in.kernels = {{"data/loader", "loader__ordered"}};
  in.kernel_differences = {{"data/loader", {"loader__ordered", "loader__first_ready"}}};
  c = classify(loader, in);
  EXPECT_EQ(c.category, "loader");
  EXPECT_EQ(
      c.detail,
      "batch 2 (A), batch 4 (B); loader loader__ordered (A), loader__first_ready (B); a first-ready loader "
      "hands out batches in the order its workers finish, so the B order was a race" +
          beside);
  // The ordered loader on both sides hands out the next batch: only the data (its row count) can change it.
  in.kernel_differences.clear();
  EXPECT_EQ(classify(loader, in).category, "data");

  // A draw's key comes from the seed: with the seeds differing, the data is not the cause.
  in.kernels.clear();
  in.seed_recorded = 43;
  in.seed_replayed = 42;
  in.config_differences = {"seed: 43 -> 42"};
  FirstDivergence init = event("setup", "rng", "init/dense_1.kernel");
  init.same_count = true;
  c = classify(init, in);
  EXPECT_EQ(c.category, "config");
  EXPECT_EQ(c.detail,
            "the run configuration differs: seed: 43 -> 42; the data differs too, but cannot have made this "
            "difference (a draw's key comes from the run's seed alone, the seeds differ, and the draw is of "
            "the same "
            "size on both sides): data file 'a.csv' differs (a.csv, 10 bytes vs b.csv, 10 bytes)");
  // A draw of another size: the data's shape (another column count) may have made it, beside the seed.
  init.same_count = false;
  EXPECT_EQ(classify(init, in).category, "data");
  init.same_count = true;
  // With the same seed, the data's shape can change a draw (how many words): the data is named.
  in.seed_replayed = 43;
  in.config_differences.clear();
  EXPECT_EQ(classify(init, in).category, "data");

  // An update whose gradients matched (level op): the learning rate, not the data.
  in.config_differences = {"train.optimizer.learning_rate: 0.001 -> 0.002"};
  c = classify(event("update", "probe", "dense_1.kernel/update:out", "dense_1"), in);
  EXPECT_EQ(c.category, "config");
  EXPECT_EQ(
      c.detail.rfind("the run configuration differs: train.optimizer.learning_rate: 0.001 -> 0.002; the "
                     "data differs too, but cannot have made this difference (an update reads the data "
                     "only through the gradients, and they were the same)",
                     0),
      0u)
      << c.detail;
  // A layer's output reads the rows: the data, with the configuration beside it.
  EXPECT_EQ(classify(event("forward", "probe", "dense_1/matmul.fwd:out", "dense_1"), in).category, "data");
}

// Everything before the first divergent event is the same on both sides: a difference that only changes
// what comes after it cannot have caused it.
TEST(Cause, ADifferenceReachesOnlyTheEventsItCanChange) {
  const std::vector<std::string> layers = {"dense_1", "dropout_1", "dense_2"};
  const FirstDivergence fwd1 = event("forward", "probe", "dense_1/matmul.fwd:out", "dense_1");
  const FirstDivergence fwd2 = event("forward", "probe", "dense_2/matmul.fwd:out", "dense_2");
  const FirstDivergence bwd1 = event("backward", "probe", "dense_1/matmul.bwd_weight:out", "dense_1");
  const FirstDivergence update = event("update", "probe", "dense_1.kernel/update:out");
  const FirstDivergence mask = event("forward", "missing", "dropout/dropout_1");
  const FirstDivergence init2 = event("setup", "rng", "init/dense_2.kernel");
  const FirstDivergence loss = event("forward", "step_end", "loss");
  const FirstDivergence shuffle = event("input", "shuffle", "data/shuffle");
  const std::string lr = "train.optimizer.learning_rate: 0.001 -> 0.002";
  EXPECT_FALSE(difference_reaches(lr, fwd1, layers));
  EXPECT_FALSE(difference_reaches(lr, bwd1, layers));
  EXPECT_FALSE(difference_reaches(lr, loss, layers));
  EXPECT_TRUE(difference_reaches(lr, update, layers));
  const std::string rate = "model.layers[1].rate: 0.2 -> 0.3";
  EXPECT_FALSE(difference_reaches(rate, fwd1, layers));
  EXPECT_TRUE(difference_reaches(rate, mask, layers));
  EXPECT_TRUE(difference_reaches(rate, fwd2, layers));
  EXPECT_TRUE(difference_reaches(rate, bwd1, layers));
  EXPECT_TRUE(difference_reaches(rate, loss, layers));
  EXPECT_FALSE(difference_reaches(rate, shuffle, layers));
  // A layer added at the end: the layers before it are as they were, the initial values of a later one not.
  EXPECT_FALSE(difference_reaches("model.layers: 3 -> 4", fwd2, layers));
  EXPECT_TRUE(difference_reaches("model.layers[2].units: 10 -> 32", init2, layers));
  EXPECT_FALSE(difference_reaches("model.layers[2].units: 10 -> 32", fwd1, layers));
  EXPECT_FALSE(difference_reaches("train.loss: mse -> binary_crossentropy", fwd2, layers));
  EXPECT_TRUE(difference_reaches("train.loss: mse -> binary_crossentropy", loss, layers));
  // A layer's activation runs after its own matmul and bias: it reaches its activation and output, not them.
  const std::string tanh = "model.layers[0].activation: relu -> tanh";
  EXPECT_FALSE(difference_reaches(tanh, fwd1, layers));
  EXPECT_FALSE(
      difference_reaches(tanh, event("forward", "probe", "dense_1/bias.fwd:out", "dense_1"), layers));
  EXPECT_TRUE(difference_reaches(tanh, event("forward", "probe", "dense_1/relu.fwd:out", "dense_1"), layers));
  EXPECT_TRUE(difference_reaches(tanh, event("forward", "probe", "dense_1:out", "dense_1"), layers));
  EXPECT_TRUE(difference_reaches(tanh, fwd2, layers));
  // What may change every value is taken to reach every event, but for the initial weights' draws.
  for (const std::string everywhere :
       {"seed: 1 -> 2", "train.batch_size: 32 -> 16", "data.scale: none -> minmax"})
    for (const FirstDivergence& d : {fwd1, update, mask, shuffle})
      EXPECT_TRUE(difference_reaches(everywhere, d, layers)) << everywhere << " at " << d.site;
  EXPECT_TRUE(difference_reaches("seed: 1 -> 2", init2, layers));
}

// An initial weight's draw depends on the seed, its own layer's initializer and the shapes up to its layer:
// not on training, the input pipeline's order or scaling, the runtime, the shards, an activation or a rate.
TEST(Cause, AnInitialWeightsDrawIsReachedByTheSeedItsInitializerAndTheShapesAlone) {
  const std::vector<std::string> layers = {"dense_1", "dropout_1", "dense_2"};
  const FirstDivergence init1 = event("setup", "rng", "init/dense_1.kernel");
  const FirstDivergence init2 = event("setup", "rng", "init/dense_2.kernel");
  for (const std::string elsewhere :
       {"train.shuffle: true -> false", "train.batch_size: 32 -> 30", "train.validation_split: 0 -> 0.1",
        "train.optimizer.learning_rate: 0.001 -> 0.01", "data.scale: none -> standardize",
        "data.test_fraction: 0.2 -> 0.1", "runtime.threads: 2 -> 1", "distributed.shards: 1 -> 4",
        "augment.flip: false -> true", "model.layers[0].activation: relu -> tanh",
        "model.layers[1].rate: 0.2 -> 0.5",
        "model.layers[0].kernel_initializer: glorot_uniform -> he_uniform",
        "model.layers[0].use_bias: true -> false"})
    EXPECT_FALSE(difference_reaches(elsewhere, init2, layers)) << elsewhere;
  for (const std::string reaching :
       {"seed: 7 -> 8", "model.layers[0].units: 64 -> 32", "model.layers[0].name: dense_1 -> b",
        "model.layers[2].name: dense_2 -> out",
        "model.layers[2].kernel_initializer: glorot_uniform -> he_uniform", "model.layers[2].units: 10 -> 5",
        "data.reshape: () -> (8, 8, 1)", "data.path: a.csv -> b.csv"})
    EXPECT_TRUE(difference_reaches(reaching, init2, layers)) << reaching;
  EXPECT_TRUE(
      difference_reaches("model.layers[0].kernel_initializer: glorot_uniform -> he_uniform", init1, layers));
  EXPECT_FALSE(difference_reaches("model.layers[2].units: 10 -> 5", init1, layers));
  // A name that takes no name of the engine's numbering of Dense layers renames no other layer.
  EXPECT_FALSE(difference_reaches("model.layers[0].name: a -> b", init2, layers));
  EXPECT_FALSE(difference_reaches("model.layers[1].name: dropout_1 -> drop", init2, layers));
  // A seed and the shuffle both changed: the seed is the cause, the shuffle a note.
  CauseInputs in;
  in.layer_names = layers;
  in.seed_recorded = 7;
  in.seed_replayed = 8;
  in.config_differences = {"seed: 7 -> 8", "train.shuffle: true -> false"};
  const Cause c = classify(init1, in);
  EXPECT_EQ(c.category, "config");
  EXPECT_EQ(c.detail, "the run configuration differs: seed: 7 -> 8");
  EXPECT_EQ(
      reach_words({"train.shuffle: true -> false"}, init1),
      "an initial weight's draw depends only on the seed, on its own layer's name (the draw's stream) and "
      "initializer, and on the shapes of the layers up to it and the names given to any layer (a name given "
      "can renumber the unnamed layers of its type, before it or after it)");
}

// Data that differs reaches the model through its first layer (the rows) and its loss (the labels); the
// initial weights before either is read, through the samples' shape alone.
TEST(Cause, DataIsNotBlamedForWhatTheModelReadsBeforeOrWithoutIt) {
  const std::vector<std::string> layers = {"dense_1", "dropout_1", "dense_2"};
  CauseInputs in;
  in.layer_names = layers;
  in.name_a = "A";
  in.name_b = "B";
  in.data_changed = true;
  in.data_detail = "data file 'x.npy' differs (a/x.npy, 3328 bytes vs b/x.npy, 3328 bytes)";
  set_changed_data_sets(in, {"features"});
  EXPECT_TRUE(in.features_changed);
  EXPECT_FALSE(in.labels_changed);
  in.outputs_compared = true;
  in.config_differences = {"model.layers[0].kernel_initializer: glorot_uniform -> he_uniform"};
  // The same words of the same draw made into other values: the initializer, not the rows.
  FirstDivergence init = event("setup", "rng", "init/dense_1.kernel");
  init.same_draw = true;
  Cause c = classify(init, in);
  EXPECT_EQ(c.category, "config");
  EXPECT_NE(
      c.detail.find("the data differs too, but cannot have made this difference (the initial weights are "
                    "drawn before any row is read, and this draw is the same on both sides"),
      std::string::npos)
      << c.detail;
  // A draw of another size, or a layer's shape key that changed too: the samples' shape may have, too.
  init.same_draw = false;
  EXPECT_EQ(classify(init, in).category, "data");
  init.same_draw = true;
  in.config_differences.push_back("model.layers[0].units: 64 -> 32");
  EXPECT_EQ(classify(init, in).category, "data");

  // A later layer's forward pass, at a level that compares every layer's output: the first layer's matched.
  in.config_differences = {"model.layers[1].rate: 0.2 -> 0.5"};
  const FirstDivergence dropout = event("forward", "probe", "dropout_1:out", "dropout_1");
  c = classify(dropout, in);
  EXPECT_EQ(c.category, "config");
  EXPECT_NE(
      c.detail.find("(the rows enter the model through its first layer, dense_1, whose output in step 0 is "
                    "the same on both sides)"),
      std::string::npos)
      << c.detail;
  // At level step no layer's output was compared; the first layer reads the rows itself.
  in.outputs_compared = false;
  EXPECT_EQ(classify(dropout, in).category, "data");
  in.outputs_compared = true;
  in.config_differences = {"model.layers[0].activation: relu -> tanh"};
  EXPECT_EQ(classify(event("forward", "probe", "dense_1:out", "dense_1"), in).category, "data");

  // The loss reads the labels: the same labels and model outputs leave the rows out of it.
  in.config_differences = {"train.from_logits: false -> true"};
  const FirstDivergence loss = event("forward", "step_end", "loss");
  EXPECT_EQ(classify(loss, in).category, "config");
  set_changed_data_sets(in, {"labels"});
  EXPECT_EQ(classify(loss, in).category, "data");
  // Labels alone reach no layer's forward pass, nor the initial weights.
  in.config_differences = {"model.layers[0].activation: relu -> tanh"};
  c = classify(event("forward", "probe", "dense_1:out", "dense_1"), in);
  EXPECT_EQ(c.category, "config");
  EXPECT_NE(c.detail.find("the labels are read by the loss alone"), std::string::npos) << c.detail;
  init.same_draw = false;
  in.config_differences = {"model.layers[0].units: 64 -> 32"};
  EXPECT_EQ(classify(init, in).category, "config");
  // Augmentation noise of the same words made into other values: its distribution's parameters, not the rows.
  in.config_differences = {"augment.noise_stddev: 0.05 -> 0.1"};
  FirstDivergence noise = event("input", "rng", "augment/noise");
  noise.same_draw = noise.same_count = true;
  set_changed_data_sets(in, {"features"});
  c = classify(noise, in);
  EXPECT_EQ(c.category, "config");
  EXPECT_NE(
      c.detail.find("the draw is the same words on both sides, and what makes its values of them does not "
                    "read the rows"),
      std::string::npos)
      << c.detail;
  noise.same_draw = false;
  EXPECT_EQ(classify(noise, in).category, "data");
  // A CSV file holds both.
  set_changed_data_sets(in, {"data"});
  EXPECT_TRUE(in.features_changed && in.labels_changed);
  EXPECT_EQ(classify(loss, in).category, "data");
}

// A run's allreduce variant reaches its allreduce and what follows, not the batch, its sharding, a shard's
// gradient or parameters compared after allreduce calls that matched; its shard count reaches the sharding,
// not the input pipeline.
TEST(Cause, ARunsDistributedKeysReachTheAllreduceAndTheSharding) {
  const std::vector<std::string> layers = {"dense_1", "dense_2"};
  const std::string allreduce = "distributed.allreduce: auto -> arrival";
  const std::string shards = "distributed.shards: 0 -> 4";
  const FirstDivergence loader = event("input", "loader", "data/loader");
  const FirstDivergence sharding = event("input", "sharding", "data/sharding");
  const FirstDivergence gradient = event("backward", "collective", "allreduce/bucket_0");
  const FirstDivergence sum = event("allreduce", "collective", "allreduce/bucket_0");
  const FirstDivergence update = event("update", "step_end", "parameters");
  // A step's parameters are compared after its allreduce calls, which matched where they differ first.
  for (const FirstDivergence& d : {loader, sharding, gradient, update})
    EXPECT_FALSE(difference_reaches(allreduce, d, layers)) << d.site;
  for (const FirstDivergence& d : {sum, event("update", "probe", "dense_1.kernel/update:out")})
    EXPECT_TRUE(difference_reaches(allreduce, d, layers)) << d.site;
  EXPECT_FALSE(difference_reaches(shards, loader, layers));
  for (const FirstDivergence& d : {sharding, gradient, sum})
    EXPECT_TRUE(difference_reaches(shards, d, layers)) << d.site;
}

// A batch normalization's momentum enters its moving statistics only: training normalizes with the batch's
// statistics, and only evaluation reads the moving ones.
TEST(Cause, ABatchNormalizationsMomentumReachesOnlyItsMovingStatistics) {
  const std::vector<std::string> layers = {"conv2d_1", "batch_normalization_1", "activation_1",
                                           "batch_normalization_2", "dense_1"};
  const std::string momentum = "model.layers[1].momentum: 0.99 -> 0.9";
  const std::string bn = "batch_normalization_1";
  EXPECT_TRUE(
      difference_reaches(momentum, event("forward", "probe", bn + "/moving_stats.fwd:out", bn), layers));
  EXPECT_TRUE(difference_reaches(momentum, event("forward", "probe", bn + ":moving_stats", bn), layers));
  // No event differs (a diff whose runs differ in the inputs only): the key is among the causes.
  EXPECT_TRUE(difference_reaches(momentum, event("setup", "config", "config"), layers));
  for (const FirstDivergence& d :
       {event("forward", "probe", bn + "/bn_stats.fwd:out", bn),
        event("forward", "probe", bn + "/batch_norm.fwd:out", bn), event("forward", "probe", bn + ":out", bn),
        event("forward", "probe", "dense_1/matmul.fwd:out", "dense_1"),
        event("forward", "probe", "batch_normalization_2/moving_stats.fwd:out", "batch_normalization_2"),
        event("backward", "probe", bn + "/bn_sums.bwd:out", bn), event("forward", "step_end", "loss"),
        event("update", "step_end", "batch_normalization_1.gamma:value")})
    EXPECT_FALSE(difference_reaches(momentum, d, layers)) << d.site;
  // Another key of the layer reaches its forward pass as before.
  EXPECT_TRUE(difference_reaches("model.layers[1].epsilon: 0.001 -> 0.01",
                                 event("forward", "probe", bn + "/batch_norm.fwd:out", bn), layers));
}

// Two threads racing at a batch normalization's sum differ there whatever the momentum: the race is the
// cause, and the momentum is said to change what it cannot reach.
TEST(Cause, ARaceAtABatchNormalizationSumIsNumericBesideAnotherMomentum) {
  FirstDivergence d =
      event("forward", "probe", "batch_normalization_1/bn_stats.fwd:out", "batch_normalization_1");
  d.kernel_recorded = d.kernel_replayed = "f32_sum__cpu_atomic_threads";
  CauseInputs in;
  in.layer_names = {"conv2d_1", "batch_normalization_1"};
  in.config_differences = {"model.layers[1].momentum: 0.99 -> 0.9"};
  in.order_differences = {{"batch_normalization_1/bn_stats.fwd", 0}};
  EXPECT_EQ(classify(d, in).category, "numeric");
  EXPECT_EQ(reach_words(in.config_differences, d),
            "a batch normalization's momentum changes only its moving statistics, which evaluation reads and "
            "training does not");
}

// At level layer a layer's output that differs first can come from any of its own ops: a configuration cause
// there names the layer's kernel selections that differ too, as at level step; at level op the op that
// differs first is compared, and its kernel is named (or none differs).
TEST(Cause, AtLevelLayerTheLayersOwnKernelSelectionsAreNamedBesideTheConfiguration) {
  FirstDivergence d = event("forward", "probe", "dense_1:out", "dense_1");
  CauseInputs in;
  in.outputs_compared = true;
  in.layer_names = {"dense_1", "dense_2"};
  in.config_differences = {"data.scale: standardize -> minmax"};
  in.kernel_differences = {
      {"dense_1/matmul.fwd", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__cpu_blocked_generic"}},
      {"dense_2/matmul.fwd", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__cpu_blocked_generic"}}};
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "config");
  EXPECT_NE(
      c.detail.find("which can have made it as well: dense_1/matmul.fwd: f32_matmul__cpu_blocked_avx512 vs "
                    "f32_matmul__cpu_blocked_generic; the trace holds the layer's output, not its ops' "
                    "(level layer)"),
      std::string::npos)
      << c.detail;
  EXPECT_EQ(c.detail.find("dense_2/matmul.fwd"), std::string::npos) << c.detail;
  in.op_outputs_compared = true;
  EXPECT_EQ(classify(d, in).detail.find("which can have made it as well"), std::string::npos)
      << classify(d, in).detail;
}

TEST(Cause, ADifferenceThatCannotReachTheFirstEventLeavesItsCauseToTheKernel) {
  FirstDivergence d = event("forward", "probe", "dense_1/matmul.fwd:out", "dense_1");
  d.kernel_recorded = "f32_matmul__cpu_blocked_avx512";
  d.kernel_replayed = "f32_matmul__cpu_blocked_generic";
  CauseInputs in;
  in.layer_names = {"dense_1", "dense_2"};
  in.config_differences = {"train.optimizer.learning_rate: 0.001 -> 0.002",
                           "model.layers[1].activation: relu -> tanh"};
  EXPECT_EQ(classify(d, in).category, "kernel");
  EXPECT_EQ(
      reach_words(in.config_differences, d),
      "an optimizer's keys change only the update; a layer's keys change nothing before that layer's forward "
      "pass (its activation nothing before the activation runs, after the layer's matmul or convolution and "
      "bias)");
  // A key of the layer itself may be the cause.
  in.config_differences.push_back("model.layers[0].units: 16 -> 8");
  const Cause c = classify(d, in);
  EXPECT_EQ(c.category, "config");
  // The other kernel at the op is as much evidence, and named beside it.
  EXPECT_EQ(
      c.detail,
      "the run configuration differs: model.layers[0].units: 16 -> 8; a different kernel ran at "
      "dense_1/matmul.fwd too, f32_matmul__cpu_blocked_avx512 (recorded) vs f32_matmul__cpu_blocked_generic "
      "(replayed), which can have made it as well");
}

// A completion-order sum whose order differed at the very op that differs first, its inputs the same: the
// order is the cause in hand; a configuration difference that reaches the op is named beside it.
TEST(Cause, AnOrderThatDifferedAtTheDivergentOpIsTheCauseBeforeTheConfiguration) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  FirstDivergence d = event("backward", "probe", "conv2d_1/bias.bwd:out", "conv2d_1");
  d.kernel_recorded = d.kernel_replayed = "f32_sum__cpu_atomic_threads";
  CauseInputs in;
  in.registry = &registry;
  in.layer_names = {"conv2d_1", "batch_normalization_1"};
  in.config_differences = {"model.layers[1].epsilon: 0.001 -> 0.01"};
  in.order_differences = {{"conv2d_1/bias.bwd", 0}};
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "numeric") << c.detail;
  EXPECT_NE(c.detail.find("accumulates in completion order"), std::string::npos) << c.detail;
  EXPECT_NE(c.detail.find("the run configuration differs too: model.layers[1].epsilon: 0.001 -> 0.01"),
            std::string::npos)
      << c.detail;
  // Without the order in hand, the configuration that reaches the op is the cause.
  in.order_differences.clear();
  EXPECT_EQ(classify(d, in).category, "config");
}

// An order that differed in a backward op explains no difference in the forward pass of its step.
TEST(Cause, ABackwardOrderDoesNotExplainAForwardDifferenceOfItsStep) {
  FirstDivergence d = event("forward", "probe", "batch_normalization_1:out", "batch_normalization_1");
  CauseInputs in;
  in.order_differences = {{"batch_normalization_1/bn_stats.fwd", 0},
                          {"batch_normalization_1/bn_sums.bwd", 0}};
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "numeric");
  EXPECT_NE(c.detail.find("batch_normalization_1/bn_stats.fwd (step 0)"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("bn_sums.bwd"), std::string::npos) << c.detail;
  // One step later, the earlier step's backward order is part of what came before.
  d.step = 1;
  EXPECT_NE(classify(d, in).detail.find("bn_sums.bwd (step 0)"), std::string::npos);
}

// At a layer's output, the kernels of that layer's forward ops are named first: its backward ops and the
// other layers' ran after it or matched.
TEST(Cause, KernelSelectionsAtTheDivergentLayersOpsOfItsPhaseComeFirst) {
  FirstDivergence d = event("forward", "probe", "dense_2:out", "dense_2");
  CauseInputs in;
  in.kernel_differences = {{"dense_1/matmul.bwd_weight", {"a", "b"}},
                           {"dense_2/matmul.bwd_weight", {"c", "d"}},
                           {"dense_2/matmul.fwd", {"e", "f"}}};
  const Cause c = classify(d, in);
  EXPECT_EQ(c.category, "kernel");
  EXPECT_EQ(c.detail.rfind(
                "kernel selections differ: dense_2/matmul.fwd: e vs f; dense_2/matmul.bwd_weight: c vs d; "
                "dense_1/matmul.bwd_weight: a vs b",
                0),
            0u)
      << c.detail;
}

// Where the layers' outputs were compared (level layer or op), the first layer whose output differs had its
// inputs the same: the layers before it computed the same outputs, whatever kernels they ran, and only its
// own forward ops' kernels can be the cause. With none of those differing, no kernel selection is named, and
// the evidence left (a completion-order sum whose order differed there) is.
TEST(Cause, AKernelOfALayerWhoseOutputComparedTheSameIsNoCause) {
  const FirstDivergence d = event("forward", "probe", "batch_normalization_1:out", "batch_normalization_1");
  CauseInputs in;
  in.outputs_compared = true;
  in.kernel_differences = {
      {"conv2d_1/conv2d.fwd", {"f32_conv2d_fwd__cpu_im2col_avx512", "f32_conv2d_fwd__cpu_im2col_avx2"}}};
  in.order_differences = {{"batch_normalization_1/bn_stats.fwd", 0}};
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "numeric") << c.detail;
  EXPECT_NE(c.detail.find("completion order"), std::string::npos) << c.detail;
  EXPECT_EQ(c.detail.find("conv2d"), std::string::npos) << c.detail;
  // The layer's own forward op is named, alone.
  in.kernel_differences["batch_normalization_1/bn_stats.fwd"] = {"f32_sum__cpu_pairwise",
                                                                 "f32_sum__cpu_atomic_threads"};
  c = classify(d, in);
  EXPECT_EQ(c.category, "kernel");
  EXPECT_EQ(
      c.detail.rfind("kernel selections differ: batch_normalization_1/bn_stats.fwd: f32_sum__cpu_pairwise vs "
                     "f32_sum__cpu_atomic_threads",
                     0),
      0u)
      << c.detail;
  EXPECT_EQ(c.detail.find("conv2d"), std::string::npos) << c.detail;
  // Where the outputs were not compared (level step), the layers before it may have made it.
  in.outputs_compared = false;
  c = classify(d, in);
  EXPECT_NE(c.detail.find("conv2d_1/conv2d.fwd"), std::string::npos) << c.detail;
}

TEST(EnvironmentDifferences, AnUnsetVariableAndAKeyAnOlderTraceLacksAreToldApart) {
  // An older trainrr recorded CUDA_HOME, which changes no value: never a difference.
  const std::vector<std::pair<std::string, std::string>> older = {
      {"cpu.model", "AMD EPYC"}, {"env.OMP_NUM_THREADS", "4"}, {"env.CUDA_HOME", "/usr/local/cuda"}};
  const std::vector<std::pair<std::string, std::string>> newer = {
      {"cpu.model", "AMD EPYC"}, {"lib.libc", "glibc 2.36"}, {"env.OPENBLAS_CORETYPE", "Haswell"}};
  const std::vector<EnvDifference> d = environment_differences(older, newer);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].key, "env.OMP_NUM_THREADS");
  EXPECT_EQ(d[0].replayed, "(unset)");
  EXPECT_EQ(d[1].key, "env.OPENBLAS_CORETYPE");
  EXPECT_EQ(d[1].recorded, "(unset)");
  EXPECT_EQ(d[2].key, "lib.libc");
  EXPECT_EQ(d[2].recorded, "(not recorded)");
  EXPECT_EQ(d[2].replayed, "glibc 2.36");
}

TEST(SideBySide, DifferentValuesNeverPrintAlike) {
  EXPECT_EQ(side_by_side(0.25, 0.5), std::make_pair(std::string("0.25"), std::string("0.5")));
  EXPECT_EQ(side_by_side(0.1018021, 0.1018024),
            std::make_pair(std::string("0.1018021"), std::string("0.1018024")));
  const float f = 0.4420880079f;
  const auto [a, b] = side_by_side(f, std::nextafter(f, 1.0f));
  EXPECT_NE(a, b);
  EXPECT_EQ(side_by_side(1.0 / 3, 1.0 / 3), std::make_pair(std::string("0.333333"), std::string("0.333333")));
}

// A loss that differs first is computed in the forward pass: backward kernels, which run after it, and the
// loader, whose batches were compared before it, cannot have made it; where the layers' outputs were compared
// (the same) and the loss's own sites differ, they are the cause, not forward ops whose outputs the
// comparison passed. At level step the layers' outputs were not compared: the forward ops that differ are
// named too.
TEST(Cause, ALossDifferenceNamesTheKernelsThatComputedIt) {
  const FirstDivergence d = event("forward", "step_end", "loss");
  CauseInputs in;
  in.outputs_compared = true;
  in.kernel_differences = {
      {"data/loader", {"loader__ordered", "loader__first_ready"}},
      {"dense_1/matmul.fwd", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__openblas_sgemm"}},
      {"dense_1/matmul.bwd_weight", {"f32_matmul__cpu_blocked_avx512", "f32_matmul__cpu_reference"}},
      {"loss/mean", {"f32_sum__cpu_pairwise", "f32_sum__cpu_chunked_threads"}}};
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "kernel");
  EXPECT_EQ(c.detail,
            "kernel selections differ: loss/mean: f32_sum__cpu_pairwise vs f32_sum__cpu_chunked_threads");
  in.outputs_compared = false;
  c = classify(d, in);
  EXPECT_EQ(c.detail,
            "kernel selections differ: loss/mean: f32_sum__cpu_pairwise vs f32_sum__cpu_chunked_threads; "
            "dense_1/matmul.fwd: f32_matmul__cpu_blocked_avx512 vs f32_matmul__openblas_sgemm");
  // Without a difference at the loss's own sites, the forward ones remain; never the backward ones or the
  // loader.
  in.kernel_differences.erase("loss/mean");
  c = classify(d, in);
  EXPECT_EQ(c.detail,
            "kernel selections differ: dense_1/matmul.fwd: f32_matmul__cpu_blocked_avx512 vs "
            "f32_matmul__openblas_sgemm");
  // Only the loader differs: no kernel can have made the difference.
  in.kernel_differences = {{"data/loader", {"loader__ordered", "loader__first_ready"}}};
  c = classify(d, in);
  EXPECT_NE(c.category, "kernel") << c.detail;
}

// At a step's end (level step) nothing inside the step was compared: the cause says what was the same, the
// kernel selections and what the step started from, not "same inputs" of an op it never saw.
TEST(Cause, AStepsEndDifferenceClaimsNoInputsItDidNotCompare) {
  const FirstDivergence d = event("update", "step_end", "(all parameters)");
  CauseInputs in;
  in.environment.push_back({"cpu.model", "AMD EPYC", "Intel(R) Xeon(R) Processor"});
  const Cause c = classify(d, in);
  EXPECT_EQ(c.category, "numeric");
  EXPECT_EQ(c.detail,
            "same kernel selections, same parameters and batch at the step's start, different output; the "
            "environment differs in cpu.model");
}

// Nothing recorded differs and no kernel is declared nondeterministic: rounding is no answer the evidence
// gives, and the cause names what can differ unrecorded.
TEST(Cause, ADifferenceWithNothingRecordedDifferingIsUnexplained) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  const FirstDivergence d = event("update", "step_end", "(all parameters)");
  CauseInputs in;
  in.registry = &registry;
  in.kernels = {{"dense_1/matmul.fwd", "f32_matmul__cpu_blocked_generic"}};
  Cause c = classify(d, in);
  EXPECT_EQ(c.category, "unexplained");
  EXPECT_EQ(c.detail,
            "same kernel selections, same parameters and batch at the step's start, different output, and "
            "nothing recorded differs (configuration, data, recorded choices, environment): either the trace "
            "does not hold what its run did (changed after it was written), or the build of trainrr that "
            "recorded it computes otherwise than this one (trainrr's version is recorded, not its build)");
  in.name_a = "A";
  in.name_b = "B";
  c = classify(d, in);
  EXPECT_EQ(c.category, "unexplained");
  EXPECT_NE(c.detail.find("either a trace does not hold what its run did (changed after it was written), or "
                          "the builds of trainrr that recorded them compute otherwise"),
            std::string::npos)
      << c.detail;
  // A kernel this trainrr does not know (another device's) may be nondeterministic: no claim either way.
  in.kernels["conv2d_1/conv.fwd"] = "f32_conv2d_fwd__cudnn_engine1";
  c = classify(d, in);
  EXPECT_EQ(c.category, "numeric");
  EXPECT_NE(c.detail.find("nothing recorded about the environment differs"), std::string::npos) << c.detail;
}

// Two recordings whose samples and labels both differ: both files are named, and which they are.
TEST(Cause, EveryDataFileThatDiffersIsNamed) {
  trace::TraceHeader a, b;
  for (const char* name : {"features", "labels"}) {
    trace::DatasetInfo d;
    d.name = name;
    d.path = std::string("/a/") + (d.name == "features" ? "x.npy" : "y.npy");
    d.size_bytes = 128;
    d.digest = {1, 2};
    a.datasets.push_back(d);
    d.path.replace(1, 1, "b");
    d.digest = {3, 4};
    b.datasets.push_back(d);
  }
  std::vector<std::string> changed;
  const std::string detail = recorded_data_difference(a, b, &changed);
  EXPECT_EQ(
      detail,
      "data file 'x.npy' differs (/a/x.npy, 128 bytes vs /b/x.npy, 128 bytes); data file 'y.npy' differs "
      "(/a/y.npy, 128 bytes vs /b/y.npy, 128 bytes)");
  EXPECT_EQ(changed, (std::vector<std::string>{"features", "labels"}));
  b.datasets[0].digest = a.datasets[0].digest;
  changed.clear();
  EXPECT_EQ(recorded_data_difference(a, b, &changed),
            "data file 'y.npy' differs (/a/y.npy, 128 bytes vs /b/y.npy, 128 bytes)");
  EXPECT_EQ(changed, (std::vector<std::string>{"labels"}));
}

// A recorded order of another count of partials than the same kernel makes here is a trace that does not
// follow its configuration, where the step read the same batch; where the first difference is which batch it
// read (a first-ready loader's other batch, the short last one), that is the cause.
TEST(Cause, AnOrderOfOtherPartialsIsTheTracesOnlyWhereTheStepReadTheSameBatch) {
  CauseInputs in;
  in.kernels = {{"data/loader", "loader__first_ready"}};
  in.orders_of_other_shapes["bn/bn_stats.fwd"] = {
      0,
      "the recorded accumulation order at bn/bn_stats.fwd (step 0) "
      "orders 28 partials, and the same kernel makes 63"};
  FirstDivergence loader = event("input", "loader", "data/loader");
  loader.detail = "step 0: recorded batch 1, replayed batch 0";
  EXPECT_EQ(classify(loader, in).category, "loader");
  const Cause c = classify(layer_output_differs(), in);
  EXPECT_EQ(c.category, "trace");
  EXPECT_EQ(
      c.detail.rfind("the recorded accumulation order at bn/bn_stats.fwd (step 0) orders 28 partials", 0), 0u)
      << c.detail;
  // With another configuration the counts may differ for that alone.
  in.config_differences = {"train.batch_size: 32 -> 16"};
  EXPECT_NE(classify(layer_output_differs(), in).category, "trace");
}

// The command a report offers sets the variables the replay ran with: one set empty is set empty, one unset
// or never recorded is left out.
TEST(Cause, TheOfferedCommandSetsAVariableTheReplayHadEmptyToEmpty) {
  const std::vector<EnvDifference> env = {{"env.TRAINRR_ISA", "generic", "(empty)"},
                                          {"env.OMP_NUM_THREADS", "4", "(unset)"},
                                          {"env.OPENBLAS_CORETYPE", "(unset)", "Haswell"},
                                          {"isa", "avx2", "generic"}};
  EXPECT_EQ(with_environment("trainrr replay a.trr", env),
            "TRAINRR_ISA= OPENBLAS_CORETYPE=Haswell trainrr replay a.trr");
}

}  // namespace
}  // namespace trainrr
