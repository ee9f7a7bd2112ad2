// The recorder with a kernel source: a recorded run on the emulated device, whose fake source launches one kernel
// per op, must attribute each kernel to its step and op, and write them into each step at the trace's level.

#include "recorder/kernel_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>

#include "engine/emulated_device.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "recorder/kernel_source_test_util.h"
#include "recorder/read_back_test_util.h"
#include "recorder/recorder.h"
#include "recorder/temp_trace_test_util.h"
#include "traces/trace_reader.h"

namespace trainrr {
namespace {

using testing::FakeKernelSource;

std::string example(const std::string& name) { return std::string(TRAINRR_SOURCE_DIR) + "/examples/" + name; }

using testing::TempFile;

RunConfig config(std::vector<std::string> overrides = {}) {
  overrides.insert(overrides.begin(), {"train.epochs=2", "runtime.policy=deterministic"});
  auto c = load_config(example("breast_cancer.toml"), overrides);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return std::move(c).value();
}

struct Recorded {
  trace::TraceHeader header;
  std::vector<trace::TraceStep> steps;
  std::optional<trace::TraceFooter> footer;
  std::vector<std::string> params;                           // the model's parameters, in order
  std::vector<std::pair<std::string, uint64_t>> final_params;  // name -> digest at the end
};

// Trains on the emulated device with `hooks` (null: none); the parameters it ends with.
std::vector<std::pair<std::string, uint64_t>> train(const RunConfig& c, Hooks* hooks, std::vector<std::string>* names) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  EmulatedDevice device;
  TrainingOptions opts;
  opts.registry = &registry;
  opts.hooks = hooks;
  opts.device = &device;
  std::vector<std::pair<std::string, uint64_t>> out;
  auto t = Training::create(c, opts);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  if (!t) return out;
  if (Recorder* r = dynamic_cast<Recorder*>(hooks)) {
    Status started = r->start();
    EXPECT_TRUE(started.ok()) << (started.ok() ? "" : started.error().message);
  }
  Status s = (*t)->fit();
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  // A recorder is finished with the run's final state, as trainrr record finishes it.
  if (Recorder* r = dynamic_cast<Recorder*>(hooks)) {
    Status done = r->finish((*t)->state(), true, "completed");
    EXPECT_TRUE(done.ok()) << (done.ok() ? "" : done.error().message);
  }
  if (names)
    for (Param* p : (*t)->model().params()) names->push_back(p->name);
  // The parameters as the device holds them: without hooks that read each step's, the host has no copy of them.
  const size_t params = (*t)->model().params().size();
  for (const NamedTensor& w : (*t)->weights())
    if (out.size() < params) out.emplace_back(w.name, digest(w.value));
  return out;
}

Recorded record(const std::string& path, ProbeLevel level, const RunConfig& c,
                std::function<std::unique_ptr<KernelSource>()> source, bool kernels = true) {
  RecordOptions o;
  o.path = path;
  o.level = level;
  o.kernels = kernels;
  auto rec = Recorder::create(c, o);
  EXPECT_TRUE(rec.ok()) << (rec.ok() ? "" : rec.error().message);
  Recorded out;
  if (!rec) return out;
  if (source) (*rec)->set_kernel_source(std::move(source));
  (*rec)->set_runtime(1, "test", "deterministic");
  out.final_params = train(c, rec->get(), &out.params);
  rec->reset();

  testing::ReadBack back = testing::read_all(path);
  out.header = std::move(back.header);
  out.steps = std::move(back.steps);
  out.footer = std::move(back.footer);
  return out;
}

std::function<std::unique_ptr<KernelSource>()> fake(const std::shared_ptr<FakeKernelSource::Log>& log) {
  return [log] { return std::make_unique<FakeKernelSource>(log); };
}

class KernelSourceLevelTest : public ::testing::TestWithParam<ProbeLevel> {};

TEST_P(KernelSourceLevelTest, EveryOpOfEveryStepHasItsKernelAttributed) {
  const ProbeLevel level = GetParam();
  auto log = std::make_shared<FakeKernelSource::Log>();
  TempFile file("kernel-source");
  const RunConfig c = config();
  const Recorded rec = record(file.path(), level, c, fake(log));

  EXPECT_TRUE(rec.header.kernels_recorded);
  EXPECT_EQ(rec.header.kernels_not_recorded, "");
  ASSERT_TRUE(rec.footer.has_value());
  EXPECT_TRUE(rec.footer->completed);
  ASSERT_GT(rec.steps.size(), 2u);
  EXPECT_EQ(log->started, 1);
  EXPECT_EQ(log->stopped, 1);
  EXPECT_FALSE(log->nested) << "one external id at a time";
  EXPECT_EQ(log->pushes, log->pops);
  EXPECT_EQ(log->flushes, rec.steps.size());

  uint64_t kernels = 0;
  for (const trace::TraceStep& s : rec.steps) {
    SCOPED_TRACE("step " + std::to_string(s.index));
    ASSERT_TRUE(s.end.has_value());
    ASSERT_TRUE(s.kernels.has_value());
    const trace::StepKernels& k = *s.kernels;
    kernels += k.count;
    EXPECT_EQ(k.unattributed, 0u);
    EXPECT_EQ(k.dropped, 0u);
    // The fake launched kernel i in op i of the step: the digest is that of the sequence of them all.
    std::vector<trace::KernelLaunch> expected;
    for (uint32_t op = 0; op < k.count; ++op) {
      const KernelRecord r = testing::fake_kernel(op, 0, 0);
      expected.push_back({"", r.name, r.grid_x, r.grid_y, r.grid_z, r.block_x, r.block_y, r.block_z, 0, 0, 0});
    }
    EXPECT_EQ(k.digest, trace::kernel_sequence_digest(expected));
    if (level == ProbeLevel::step) {
      EXPECT_TRUE(k.launches.empty());
      continue;
    }
    ASSERT_EQ(k.launches.size(), k.count);
    std::multiset<std::string> sites;
    for (uint32_t op = 0; op < k.launches.size(); ++op) {
      const trace::KernelLaunch& l = k.launches[op];
      EXPECT_EQ(l.name, expected[op].name);
      EXPECT_EQ(l.grid_x, op + 1);
      EXPECT_EQ(l.block_x, 128u);
      EXPECT_EQ(l.static_shared, 256u);
      EXPECT_EQ(l.duration_ns, 100u + op);
      EXPECT_NE(l.site, trace::kUnattributedSite);
      sites.insert(l.site);
    }
    // Forward ops, the loss, backward ops, then each parameter's update; what follows the last update is the
    // step's end.
    EXPECT_EQ(k.launches.back().site, kStepEndSite);
    EXPECT_EQ(sites.count("loss"), 1u);
    for (const std::string& p : rec.params) EXPECT_EQ(sites.count(p + "/update"), 1u) << p;
    EXPECT_EQ(k.launches[k.count - 2].site, rec.params.back() + "/update");
    EXPECT_TRUE(std::any_of(sites.begin(), sites.end(), [](const std::string& site) {
      return site.ends_with("/matmul.fwd") || site.ends_with("/matmul.bwd_weight");
    }));
    for (const std::string& site : sites) EXPECT_FALSE(site.ends_with(":out")) << site;
    if (level == ProbeLevel::op) {
      EXPECT_EQ(sites.count("dense_1/matmul.fwd"), 1u);
    }
  }
  // Every kernel the source delivered is in the trace, once.
  EXPECT_EQ(kernels, log->pops);

  // Recording kernels changes nothing the run computes.
  EXPECT_EQ(rec.final_params, train(c, nullptr, nullptr));
}

INSTANTIATE_TEST_SUITE_P(Levels, KernelSourceLevelTest,
                         ::testing::Values(ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op),
                         [](const auto& info) { return std::string(probe_level_name(info.param)); });

TEST(KernelSourceTest, ASourceThatCannotStartGivesItsReasonInTheHeaderAndTheRunGoesOn) {
  auto log = std::make_shared<FakeKernelSource::Log>();
  log->refuse = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED (another profiler is subscribed to CUPTI)";
  TempFile file("kernel-source-refused");
  const Recorded rec = record(file.path(), ProbeLevel::op, config(), fake(log));
  EXPECT_FALSE(rec.header.kernels_recorded);
  EXPECT_EQ(rec.header.kernels_not_recorded, log->refuse);
  ASSERT_TRUE(rec.footer.has_value());
  EXPECT_TRUE(rec.footer->completed);
  ASSERT_FALSE(rec.steps.empty());
  for (const trace::TraceStep& s : rec.steps) EXPECT_FALSE(s.kernels.has_value()) << "step " << s.index;
  EXPECT_EQ(log->started, 1);
  EXPECT_EQ(log->pushes, 0u);
  EXPECT_EQ(log->stopped, 0) << "a source that did not start is not stopped";
}

TEST(KernelSourceTest, DroppedRecordsAreChargedToTheStepWhoseEndFlushedThem) {
  auto log = std::make_shared<FakeKernelSource::Log>();
  log->dropped_per_flush = 2;
  TempFile file("kernel-source-dropped");
  const Recorded rec = record(file.path(), ProbeLevel::layer, config(), fake(log));
  ASSERT_FALSE(rec.steps.empty());
  for (const trace::TraceStep& s : rec.steps) {
    ASSERT_TRUE(s.kernels.has_value());
    EXPECT_EQ(s.kernels->dropped, 2u);
  }
}

// Holds the first step's first kernel back until the next flush, as a kernel still running at a step's end
// would be.
class LateSource : public FakeKernelSource {
 public:
  using FakeKernelSource::FakeKernelSource;
  KernelRecords flush() override {
    KernelRecords r = FakeKernelSource::flush();
    if (flushes_++ == 0) {
      held_.kernels.push_back(r.kernels.front());
      held_.external.push_back(r.external.front());
      held_.api.push_back(r.api.front());
      r.kernels.erase(r.kernels.begin());
      return r;
    }
    if (!held_.kernels.empty()) {
      r.kernels.insert(r.kernels.begin(), held_.kernels.begin(), held_.kernels.end());
      r.external.insert(r.external.end(), held_.external.begin(), held_.external.end());
      r.api.insert(r.api.end(), held_.api.begin(), held_.api.end());
      held_ = {};
    }
    return r;
  }

 private:
  int flushes_ = 0;
  KernelRecords held_;
};

TEST(KernelSourceTest, AKernelDeliveredAfterItsStepEndedIsKeptUnattributedInTheNext) {
  auto log = std::make_shared<FakeKernelSource::Log>();
  TempFile file("kernel-source-late");
  const Recorded rec =
      record(file.path(), ProbeLevel::op, config(), [log] { return std::make_unique<LateSource>(log); });
  ASSERT_GT(rec.steps.size(), 2u);
  ASSERT_TRUE(rec.steps[0].kernels && rec.steps[1].kernels && rec.steps[2].kernels);
  EXPECT_EQ(rec.steps[0].kernels->count + 1, rec.steps[2].kernels->count);
  EXPECT_EQ(rec.steps[0].kernels->unattributed, 0u);
  EXPECT_EQ(rec.steps[1].kernels->count, rec.steps[2].kernels->count + 1);
  EXPECT_EQ(rec.steps[1].kernels->unattributed, 1u);
  EXPECT_EQ(rec.steps[1].kernels->launches.front().site, trace::kUnattributedSite);
  EXPECT_EQ(rec.steps[1].kernels->launches.front().grid_x, 1u) << "op 0's kernel";
  uint64_t kernels = 0;
  for (const trace::TraceStep& s : rec.steps) kernels += s.kernels ? s.kernels->count : 0;
  EXPECT_EQ(kernels, log->pops);
}

std::shared_ptr<FakeKernelSource::Log>& registered_log() {
  static std::shared_ptr<FakeKernelSource::Log> log;
  return log;
}
std::unique_ptr<KernelSource> registered_source() { return std::make_unique<FakeKernelSource>(registered_log()); }

// The factory registered for the process, for the length of a test.
class RegisteredSource {
 public:
  RegisteredSource() {
    registered_log() = std::make_shared<FakeKernelSource::Log>();
    set_kernel_source_factory(&registered_source);
  }
  ~RegisteredSource() {
    set_kernel_source_factory(nullptr);
    registered_log().reset();
  }
};

TEST(KernelSourceTest, ARunOnAGpuRecordsFromTheRegisteredSourceAndACpuRunDoesNotAsk) {
  {
    RegisteredSource registered;
    TempFile file("kernel-source-cpu");
    const Recorded rec = record(file.path(), ProbeLevel::step, config(), nullptr);
    EXPECT_FALSE(rec.header.kernels_recorded);
    EXPECT_EQ(rec.header.kernels_not_recorded, "") << "a run on the CPU asks for no kernels";
    EXPECT_EQ(registered_log()->started, 0);
  }
  {
    // runtime.device names a GPU; the emulated device stands in for it.
    RegisteredSource registered;
    TempFile file("kernel-source-gpu");
    const Recorded rec = record(file.path(), ProbeLevel::step, config({"runtime.device=cuda"}), nullptr);
    EXPECT_TRUE(rec.header.kernels_recorded);
    EXPECT_EQ(registered_log()->started, 1);
    EXPECT_EQ(registered_log()->stopped, 1);
    ASSERT_FALSE(rec.steps.empty());
    EXPECT_TRUE(rec.steps[0].kernels.has_value());
  }
  // Without a registered source a run on a GPU says why it has no kernels.
  TempFile file("kernel-source-none");
  const Recorded rec = record(file.path(), ProbeLevel::step, config({"runtime.device=cuda"}), nullptr);
  EXPECT_FALSE(rec.header.kernels_recorded);
  EXPECT_NE(rec.header.kernels_not_recorded.find("without a kernel source"), std::string::npos)
      << rec.header.kernels_not_recorded;
  ASSERT_TRUE(rec.footer.has_value());
  EXPECT_TRUE(rec.footer->completed);
}

// record --no-kernels: a run on a GPU that does not start the source, says why in the header, and computes
// what it computes with kernels gathered.
TEST(KernelSourceTest, ARunOnAGpuAskedForNoKernelsStartsNoSourceAndSaysWhy) {
  RegisteredSource registered;
  const RunConfig c = config({"runtime.device=cuda"});
  TempFile file("kernel-source-off");
  const Recorded off = record(file.path(), ProbeLevel::op, c, nullptr, false);
  EXPECT_EQ(registered_log()->started, 0);
  EXPECT_FALSE(off.header.kernels_recorded);
  EXPECT_EQ(off.header.kernels_not_recorded, kKernelsNotAsked);
  ASSERT_FALSE(off.steps.empty());
  for (const trace::TraceStep& s : off.steps) EXPECT_FALSE(s.kernels.has_value()) << s.index;
  ASSERT_TRUE(off.footer.has_value());
  EXPECT_TRUE(off.footer->completed);
  TempFile with_file("kernel-source-on");
  const Recorded on = record(with_file.path(), ProbeLevel::op, c, nullptr, true);
  EXPECT_EQ(registered_log()->started, 1);
  EXPECT_EQ(off.final_params, on.final_params);
  // The run on the CPU has no kernels to ask for, and its header has nothing to say about them.
  TempFile cpu_file("kernel-source-cpu-off");
  const Recorded cpu = record(cpu_file.path(), ProbeLevel::step, config(), nullptr, false);
  EXPECT_EQ(cpu.header.kernels_not_recorded, "");
}

}  // namespace
}  // namespace trainrr
