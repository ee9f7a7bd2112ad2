// A run recorded on a device and replayed on the CPU (--set runtime.device=cpu): the element values come from
// the recorded side re-executed on the recorded device, where this machine has it. The device here is the
// emulated one with one op nudged by a ULP, standing in for a GPU whose kernel rounds differently from the CPU's.

#include <gtest/gtest.h>

#include <cmath>

#include "engine/device.h"
#include "engine/emulated_device.h"
#include "recorder/temp_trace_test_util.h"
#include "replayer/device_recording_test_util.h"
#include "replayer/replayer.h"
#include "replayer/report_html.h"

namespace trainrr {
namespace {

using testing::TempFile;

// The emulated device, but the first value of every bias add comes out one ULP up.
class NudgedDevice : public EmulatedDevice {
 public:
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    EmulatedDevice::add_bias(y, bias, rows, cols);
    if (rows * cols > 0) y[0] = std::nextafter(y[0], INFINITY);
  }
  void bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                               MathFamily math) override {
    EmulatedDevice::bias_activation_forward(a, bias, y, rows, cols, math);
    if (rows * cols > 0) y[0] = std::nextafter(y[0], INFINITY);
  }
};

const std::vector<std::string> kRun = {"train.epochs=1", "runtime.policy=deterministic", "runtime.device=cuda"};

// Records breast_cancer.toml "on the GPU" (runtime.device = "cuda") at `level` on a device of type D, then
// replays it on the CPU, with `recorded_device` (another D) as the device the element's re-execution runs on.
template <class D>
ReplayResult record_on_and_replay_on_the_cpu(const std::string& path, ProbeLevel level, D& recorded_device) {
  {
    D device;
    testing::record_on_device(device, path, level, kRun);
  }
  ReplayOptions o;
  o.trace_path = path;
  o.overrides = {"runtime.device=cpu"};
  o.test_recorded_device = &recorded_device;
  return replay(o);
}

std::string notes(const DivergenceReport& r) {
  std::string all;
  for (const std::string& n : r.notes) all += n + "\n";
  return all;
}

bool has_note(const DivergenceReport& r, const std::string& part) { return notes(r).find(part) != std::string::npos; }

TEST(ReplayAcrossDevices, TheRecordedSideReExecutedOnTheRecordedDeviceGivesTheElementAndItsUlps) {
  TempFile file("across-devices");
  NudgedDevice recorded_device;
  const ReplayResult r = record_on_and_replay_on_the_cpu(file.path(), ProbeLevel::op, recorded_device);
  ASSERT_EQ(r.exit_code, 1) << r.error << notes(r.report);
  ASSERT_TRUE(r.report.first.has_value());
  const FirstDivergence& d = *r.report.first;
  EXPECT_EQ(d.step, 0);
  // The first op the nudge touches: dense_1's bias add, in the forward pass.
  EXPECT_EQ(d.layer, "dense_1") << d.site;
  EXPECT_EQ(d.phase, "forward") << d.site;
  ASSERT_TRUE(d.has_element) << notes(r.report);
  EXPECT_EQ(d.index, 0);
  EXPECT_EQ(d.ulp, 1u);
  EXPECT_EQ(std::nextafter(static_cast<float>(d.replayed), INFINITY), static_cast<float>(d.recorded));
  EXPECT_TRUE(has_note(r.report, "recorded choices forced on cuda, and as replayed on cpu")) << notes(r.report);
  EXPECT_TRUE(has_note(r.report, "recorded with runtime.device = \"cuda\", replayed with runtime.device = \"cpu\""))
      << notes(r.report);
  // The recorded side went to the device and came back: nothing of it is left there.
  EXPECT_GT(recorded_device.uploads(), 0u);
  EXPECT_EQ(recorded_device.live_allocations(), 0u);
}

// Without the recorded GPU, nothing stands for the recorded values: the report says so, and where they can be
// had, instead of re-executing the recorded side on the CPU (whose values are not the recorded ones).
TEST(ReplayAcrossDevices, WithoutTheRecordedGpuTheReportSaysWhereTheElementCanBeHad) {
  Result<DeviceSpec> cuda = parse_device("cuda");
  ASSERT_TRUE(cuda.ok());
  if (usable_device(*cuda).ok()) GTEST_SKIP() << "this machine has a GPU";
  TempFile file("across-devices");
  {
    NudgedDevice device;
    testing::record_on_device(device, file.path(), ProbeLevel::op, kRun);
  }
  ReplayOptions o;
  o.trace_path = file.path();
  o.overrides = {"runtime.device=cpu"};
  const ReplayResult r = replay(o);
  ASSERT_EQ(r.exit_code, 1) << r.error << notes(r.report);
  ASSERT_TRUE(r.report.first.has_value());
  EXPECT_FALSE(r.report.first->has_element);
  EXPECT_EQ(r.report.first->layer, "dense_1");
  EXPECT_TRUE(has_note(r.report, "no element detail: only the recorded device (runtime.device = \"cuda\") gives the "
                                 "recorded values, and this machine cannot run it: "))
      << notes(r.report);
  EXPECT_TRUE(has_note(r.report, "on a machine with that GPU, the report gives the first element that differs"))
      << notes(r.report);
}

// The emulated device, but the sum of every batch's losses comes out one float32 ULP up: the loss, their mean
// (the sum over a batch of 32, a power of two, divided exactly), is one float32 ULP above the CPU's, and
// nothing else differs.
class LossNudgedDevice : public EmulatedDevice {
 public:
  void column_sums(Runtime& rt, std::string_view site, const ReduceArgs& args) override {
    EmulatedDevice::column_sums(rt, site, args);
    if (site == "loss/mean") args.out[0] = std::nextafter(args.out[0], INFINITY);
  }
};

// The loss is a float32 held in a double: two losses one float32 ULP apart are 1 ULP apart, not the 2^29 ULPs
// of double precision between them.
TEST(ReplayAcrossDevices, ALossOneFloat32UlpApartIsOneUlpApart) {
  TempFile file("across-devices");
  LossNudgedDevice recorded_device;
  const ReplayResult r = record_on_and_replay_on_the_cpu(file.path(), ProbeLevel::step, recorded_device);
  ASSERT_EQ(r.exit_code, 1) << r.error << notes(r.report);
  ASSERT_TRUE(r.report.first.has_value());
  const FirstDivergence& d = *r.report.first;
  EXPECT_EQ(d.step, 0);
  EXPECT_EQ(d.site, "loss");
  EXPECT_EQ(d.phase, "forward");
  ASSERT_TRUE(d.has_element) << notes(r.report);
  EXPECT_EQ(static_cast<double>(static_cast<float>(d.recorded)), d.recorded);
  EXPECT_EQ(std::nextafter(static_cast<float>(d.replayed), INFINITY), static_cast<float>(d.recorded));
  EXPECT_EQ(d.ulp, 1u);
  EXPECT_NE(report_text(r.report).find(", 1 ULP\n"), std::string::npos) << report_text(r.report);
  EXPECT_NE(report_json(r.report).find("\"ulp\":1,"), std::string::npos) << report_json(r.report);
  EXPECT_NE(report_html(r.report).find("<td class=\"mono\">1</td></tr></table>"), std::string::npos);
}

// The emulated device, but its binary cross-entropy gives the first sample of every batch a loss and a gradient
// 1 higher: the loss differs, and from the gradient the gradients and the parameters.
class LossKernelNudgedDevice : public EmulatedDevice {
 public:
  void binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits, MathFamily math,
                           float* per_sample, float* grad) override {
    EmulatedDevice::binary_crossentropy(pred, labels, batch, from_logits, math, per_sample, grad);
    if (batch > 0) {
      per_sample[0] += 1.0f;
      grad[0] += 1.0f;
    }
  }
};

// The loss is computed in the forward pass, before the backward pass takes its gradient and the update the
// parameters: when all three differ, the loss is the first difference, at every level.
TEST(ReplayAcrossDevices, ALossThatDiffersIsNamedBeforeTheGradientsAndParametersAfterIt) {
  for (ProbeLevel level : {ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op}) {
    SCOPED_TRACE(probe_level_name(level));
    TempFile file("across-devices");
    LossKernelNudgedDevice recorded_device;
    const ReplayResult r = record_on_and_replay_on_the_cpu(file.path(), level, recorded_device);
    ASSERT_EQ(r.exit_code, 1) << r.error << notes(r.report);
    ASSERT_TRUE(r.report.first.has_value());
    const FirstDivergence& d = *r.report.first;
    EXPECT_EQ(d.step, 0);
    EXPECT_EQ(d.site, "loss");
    EXPECT_EQ(d.phase, "forward");
    EXPECT_EQ(d.detail.rfind("the loss differs: recorded ", 0), 0u) << d.detail;
    // The re-execution finds the loss first too, and gives both values.
    ASSERT_TRUE(d.has_element) << notes(r.report);
    EXPECT_EQ(d.index, 0);
    EXPECT_NE(d.recorded, d.replayed);
  }
}

}  // namespace
}  // namespace trainrr
