// A replay on the GPU gathers its own kernels and compares them with the recorded ones: recorded and replayed on
// the emulated device, each with a fake kernel source (recorder/kernel_source_test_util.h).

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "engine/emulated_device.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "recorder/kernel_source_test_util.h"
#include "replayer/device_recording_test_util.h"
#include "recorder/recorder.h"
#include "recorder/temp_trace_test_util.h"
#include "replayer/replay_hooks.h"
#include "replayer/replayer.h"

namespace trainrr {
namespace {

using testing::FakeKernelSource;

using testing::TempFile;

std::function<std::unique_ptr<KernelSource>()> fake(const std::shared_ptr<FakeKernelSource::Log>& log) {
  return [log] { return std::make_unique<FakeKernelSource>(log); };
}

// Records breast_cancer.toml on the emulated device, its kernels from a fake source.
void record(const std::string& path, ProbeLevel level) {
  EmulatedDevice device;
  testing::record_on_device(device, path, level, {"train.epochs=1", "runtime.policy=deterministic"});
}

ReplayResult replay_with(const std::string& path, const std::shared_ptr<FakeKernelSource::Log>& log,
                         std::vector<std::string> overrides = {}) {
  EmulatedDevice device;
  ReplayOptions o;
  o.trace_path = path;
  o.overrides = std::move(overrides);
  o.element_detail = false;
  o.test_device = &device;
  o.test_kernel_source = fake(log);
  return replay(o);
}

bool has_note(const DivergenceReport& r, const std::string& part) {
  for (const std::string& n : r.notes)
    if (n.find(part) != std::string::npos) return true;
  return false;
}

std::string notes(const DivergenceReport& r) {
  std::string all;
  for (const std::string& n : r.notes) all += n + "\n";
  return all;
}

class ReplayKernelsTest : public ::testing::TestWithParam<ProbeLevel> {};

TEST_P(ReplayKernelsTest, TheSameKernelsGiveNoNote) {
  TempFile file("replay-kernels");
  record(file.path(), GetParam());
  auto log = std::make_shared<FakeKernelSource::Log>();
  const ReplayResult r = replay_with(file.path(), log);
  EXPECT_EQ(r.exit_code, 0) << r.error << notes(r.report);
  EXPECT_EQ(log->started, 1);
  EXPECT_GT(log->flushes, 2u);
  EXPECT_FALSE(has_note(r.report, "kernels")) << notes(r.report);
}

TEST_P(ReplayKernelsTest, AnOpThatLaunchedAnotherKernelWithTheSameOutputsIsANoteSaidOnce) {
  TempFile file("replay-kernels");
  record(file.path(), GetParam());
  auto log = std::make_shared<FakeKernelSource::Log>();
  // Op 2 launches another kernel in every step.
  log->edit = [](KernelRecord& k) {
    if (k.name == "_Z11fake_kernelILi2EEvv") k.name = "_Z12other_kernelILi2EEvv";
  };
  const ReplayResult r = replay_with(file.path(), log);
  EXPECT_EQ(r.exit_code, 0) << r.error << notes(r.report);
  int said = 0;
  for (const std::string& n : r.report.notes)
    if (n.find("launched other kernels than recorded") != std::string::npos) {
      ++said;
      if (GetParam() == ProbeLevel::step) {
        EXPECT_NE(n.find("at step 0, the step launched"), std::string::npos) << n;
      } else {
        EXPECT_NE(n.find("at step 0, op "), std::string::npos) << n;
        EXPECT_NE(n.find("void fake_kernel<2>() grid(3,1,1) block(128,1,1) vs void other_kernel<2>() grid(3,1,1) "
                         "block(128,1,1)"),
                  std::string::npos)
            << n;
      }
    }
  EXPECT_EQ(said, 1) << notes(r.report);
}

TEST_P(ReplayKernelsTest, ASourceThatCannotStartIsANote) {
  TempFile file("replay-kernels");
  record(file.path(), GetParam());
  auto log = std::make_shared<FakeKernelSource::Log>();
  log->refuse = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED: another profiler is attached";
  const ReplayResult r = replay_with(file.path(), log);
  EXPECT_EQ(r.exit_code, 0) << r.error << notes(r.report);
  EXPECT_TRUE(has_note(r.report, "the replay's GPU kernels were not gathered: "
                                 "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED: another profiler is attached"))
      << notes(r.report);
  EXPECT_EQ(log->pushes, 0u);
}

TEST_P(ReplayKernelsTest, ADivergenceNamesTheKernelsOnEachSideAndTheTimelineDrawsTheReplayed) {
  TempFile file("replay-kernels");
  record(file.path(), GetParam());
  auto log = std::make_shared<FakeKernelSource::Log>();
  log->edit = [](KernelRecord& k) {
    if (k.name == "_Z11fake_kernelILi0EEvv") k.grid_x = 7;
  };
  const ReplayResult r = replay_with(file.path(), log, {"train.optimizer.learning_rate=0.5"});
  ASSERT_EQ(r.exit_code, 1) << r.error << notes(r.report);
  ASSERT_TRUE(r.report.first.has_value());
  EXPECT_FALSE(has_note(r.report, "launched other kernels than recorded")) << notes(r.report);
  const KernelTimeline& tl = r.report.page.timeline;
  EXPECT_EQ(tl.step, r.report.first->step);
  ASSERT_TRUE(tl.b.has_value()) << tl.missing_b;
  EXPECT_EQ(tl.missing_b, "");
  EXPECT_GT(tl.b->count, 0u);
  if (GetParam() != ProbeLevel::step) {
    ASSERT_FALSE(tl.b->launches.empty());
    EXPECT_EQ(tl.b->launches[0].grid_x, 7u);
  }
  if (r.report.first->kind != "probe" || GetParam() == ProbeLevel::step ||
      kernel_site_of(r.report.first->site) == tl.b->launches[0].site) {
    EXPECT_TRUE(has_note(r.report, "at the first divergence")) << notes(r.report);
  }
}

TEST(ReplayKernels, AFailedSourceKeepsTheTimelinesSentence) {
  TempFile file("replay-kernels");
  record(file.path(), ProbeLevel::layer);
  auto log = std::make_shared<FakeKernelSource::Log>();
  log->refuse = "no CUPTI";
  const ReplayResult r = replay_with(file.path(), log, {"train.optimizer.learning_rate=0.5"});
  ASSERT_EQ(r.exit_code, 1) << r.error << notes(r.report);
  EXPECT_FALSE(r.report.page.timeline.b.has_value());
  EXPECT_NE(r.report.page.timeline.missing_b.find("a replay does not gather the kernels it launches"),
            std::string::npos)
      << r.report.page.timeline.missing_b;
}

trace::KernelLaunch launch(const std::string& site, const std::string& name, uint32_t grid = 1) {
  trace::KernelLaunch k;
  k.site = site;
  k.name = name;
  k.grid_x = grid;
  return k;
}

TEST(FirstKernelDifference, ComparesEachOpsSequenceAndPrefersTheNamedOp) {
  trace::StepKernels a, b;
  a.launches = {launch("d/matmul.fwd", "gemm"), launch("d/relu.fwd", "relu"), launch("d/relu.fwd", "relu2"),
                launch(std::string(trace::kUnattributedSite), "late")};
  b.launches = {launch("d/matmul.fwd", "gemm"), launch("d/relu.fwd", "relu"),
                launch(std::string(trace::kUnattributedSite), "other late")};
  a.count = b.count = 3;
  EXPECT_FALSE(first_kernel_difference(a, a).has_value());
  auto d = first_kernel_difference(a, b);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->op, "d/relu.fwd");
  EXPECT_EQ(d->recorded, "relu2 grid(1,1,1) block(1,1,1)");
  EXPECT_EQ(d->replayed, "no kernel");
  EXPECT_EQ(d->index, 1u);
  EXPECT_EQ(d->recorded_launch, &a.launches[2]);
  EXPECT_EQ(d->replayed_launch, nullptr);
  EXPECT_EQ(d->recorded_in_op, 2u);
  EXPECT_EQ(d->replayed_in_op, 1u);
  // With the kernels no op claims, as diff compares them: ops are taken in launch order, so the relu op, launched
  // before the late kernel, still differs first; a late kernel launched first differs first.
  d = first_kernel_difference(a, b, "", true);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->op, "d/relu.fwd");
  const trace::StepKernels a_late = [&] {
    trace::StepKernels k = a;
    k.launches.pop_back();
    k.launches.insert(k.launches.begin(), launch(std::string(trace::kUnattributedSite), "late"));
    return k;
  }();
  d = first_kernel_difference(a_late, b, "", true);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->op, trace::kUnattributedSite) << "launched first, compared first";
  EXPECT_EQ(first_kernel_difference(a_late, b)->op, "d/relu.fwd") << "left out by default";
  b.launches.insert(b.launches.begin() + 2, launch("d/relu.fwd", "relu2"));
  b.launches[0].grid_x = 4;
  d = first_kernel_difference(a, b, "d/relu.fwd");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->op, "d/matmul.fwd") << "the named op's kernels match";
  EXPECT_EQ(d->replayed, "gemm grid(4,1,1) block(1,1,1)");
}

TEST(FirstKernelDifference, AtLevelStepComparesTheCountAndTheDigest) {
  trace::StepKernels a, b;
  a.count = b.count = 5;
  a.digest = b.digest = 9;
  EXPECT_FALSE(first_kernel_difference(a, b).has_value());
  b.digest = 10;
  auto d = first_kernel_difference(a, b);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->op, "");
}

INSTANTIATE_TEST_SUITE_P(Levels, ReplayKernelsTest,
                         ::testing::Values(ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op),
                         [](const ::testing::TestParamInfo<ProbeLevel>& i) {
                           return std::string(probe_level_name(i.param));
                         });

}  // namespace
}  // namespace trainrr
