#include "recorder/recorder.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <set>

#include "engine/device.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/trainer.h"
#include "recorder/environment.h"
#include "recorder/read_back_test_util.h"
#include "recorder/temp_trace_test_util.h"
#include "traces/trace_reader.h"

extern char** environ;

namespace trainrr {
namespace {

using Digests = std::vector<std::vector<std::pair<std::string, uint64_t>>>;  // per step: name -> digest

std::string example(const std::string& name) { return std::string(TRAINRR_SOURCE_DIR) + "/examples/" + name; }

using testing::read_all;
using testing::ReadBack;
using testing::TempFile;

void keep_params(const StepSummary& s, Digests& out) {
  auto& step = out.emplace_back();
  for (const auto& [name, t] : s.params) step.emplace_back(name, digest(*t));
}

// What a trace holds for per-parameter digests `each` at `level`: them, or at level step the one digest over
// all of them (of their digests in order).
std::vector<std::pair<std::string, uint64_t>> as_recorded(const std::vector<std::pair<std::string, uint64_t>>& each,
                                                          ProbeLevel level) {
  if (level != ProbeLevel::step) return each;
  std::vector<uint64_t> d;
  for (const auto& [name, v] : each) d.push_back(v);
  return {{"(all parameters)", digest_bytes(d.data(), d.size() * sizeof(uint64_t))}};
}

// Observes parameters after each step and decides nothing: an unrecorded run.
class ParamDigests : public Hooks {
 public:
  void step_end(const StepSummary& s) override { keep_params(s, digests); }
  Digests digests;
};

RunConfig config(const std::vector<std::string>& overrides) {
  auto c = load_config(example("breast_cancer.toml"), overrides);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return std::move(c).value();
}

const std::vector<std::string> kShort = {"train.epochs=3"};

struct TrainedRun {
  std::vector<std::pair<std::string, uint64_t>> final_params;
  int64_t steps = 0;
};

std::vector<std::pair<std::string, uint64_t>> param_digests(Training& t) {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (Param* p : t.model().params()) out.emplace_back(p->name, digest(p->value));
  return out;
}

// Trains breast_cancer for three epochs under the deterministic policy with the given hooks (null: none); a
// recorder among them is finished with the run's final state, as trainrr record finishes it.
TrainedRun train(Hooks* hooks) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.hooks = hooks;
  opts.policy = Policy::deterministic;
  auto t = Training::create(config(kShort), opts);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  Status s = (*t)->fit();
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  if (auto* rec = dynamic_cast<Recorder*>(hooks)) {
    Status done = rec->finish((*t)->state(), true, "completed");
    EXPECT_TRUE(done.ok()) << (done.ok() ? "" : done.error().message);
  }
  TrainedRun r;
  r.final_params = param_digests(**t);
  r.steps = (*t)->step();
  return r;
}

std::unique_ptr<Recorder> make_recorder(const std::string& path, ProbeLevel level, int64_t checkpoint_every) {
  RecordOptions o;
  o.path = path;
  o.level = level;
  o.checkpoint_every = checkpoint_every;
  auto r = Recorder::create(config(kShort), o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  (*r)->set_runtime(2, "test", "deterministic");
  return std::move(r).value();
}

// Records with the recorder as the run's only hooks: the per-step parameter digests come from the trace's
// step ends, which is where a user (and replay) finds them.
TrainedRun record(const std::string& path, ProbeLevel level, int64_t checkpoint_every = 0) {
  auto rec = make_recorder(path, level, checkpoint_every);
  return train(rec.get());
}

// Every message of a trace, read back.
class RecorderLevelTest : public ::testing::TestWithParam<ProbeLevel> {};

TEST_P(RecorderLevelTest, ParametersAfterEveryStepAreBitIdenticalToAnUnrecordedRun) {
  ParamDigests observer;
  const TrainedRun plain = train(&observer);
  const TrainedRun unhooked = train(nullptr);
  TempFile file("recorder-level");
  const TrainedRun recorded = record(file.path(), GetParam(), 7);
  const ReadBack back = read_all(file.path());

  ASSERT_GT(plain.steps, 0);
  ASSERT_EQ(observer.digests.size(), static_cast<size_t>(plain.steps));
  ASSERT_EQ(back.steps.size(), observer.digests.size());
  for (size_t s = 0; s < observer.digests.size(); ++s) {
    ASSERT_TRUE(back.steps[s].end.has_value()) << "step " << s;
    ASSERT_EQ(back.steps[s].end->params, as_recorded(observer.digests[s], GetParam()))
        << "parameters differ after step " << s;
  }
  EXPECT_EQ(recorded.final_params, plain.final_params);
  EXPECT_EQ(unhooked.final_params, plain.final_params);
}

INSTANTIATE_TEST_SUITE_P(Levels, RecorderLevelTest,
                         ::testing::Values(ProbeLevel::step, ProbeLevel::layer, ProbeLevel::op),
                         [](const auto& info) { return std::string(probe_level_name(info.param)); });

TEST(RecorderTest, TraceHoldsEveryStepWithTheParameterDigestsOfTheRun) {
  TempFile file("recorder-steps");
  const TrainedRun run = record(file.path(), ProbeLevel::step);
  const ReadBack back = read_all(file.path());

  ASSERT_EQ(back.steps.size(), static_cast<size_t>(run.steps));
  for (size_t s = 0; s < back.steps.size(); ++s) {
    EXPECT_EQ(back.steps[s].index, static_cast<int64_t>(s));
    ASSERT_TRUE(back.steps[s].end.has_value()) << "step " << s;
  }
  // The last step's digests are those of the model the run ended with.
  EXPECT_EQ(back.steps.back().end->params, as_recorded(run.final_params, ProbeLevel::step));
  ASSERT_TRUE(back.footer.has_value());
  EXPECT_TRUE(back.footer->completed);
  EXPECT_EQ(back.footer->end_reason, "completed");
  EXPECT_EQ(back.footer->step_count, run.steps);
  EXPECT_EQ(back.epochs.size(), 3u);
  EXPECT_EQ(back.header.seed, 42u);
  EXPECT_FALSE(back.header.seed_from_entropy);
  EXPECT_EQ(back.header.config_overrides, kShort);
}

TEST(RecorderTest, FirstStepHoldsInitialisationDrawsSplitShuffleAndKernelChoices) {
  TempFile file("recorder-events");
  record(file.path(), ProbeLevel::step);
  const ReadBack back = read_all(file.path());
  ASSERT_FALSE(back.steps.empty());

  std::set<std::string> draws, kernels;
  int splits = 0;
  std::vector<int> shuffled_epochs;
  int64_t batches = 0;
  for (const auto& step : back.steps) {
    for (const auto& e : step.events) {
      if (auto* r = std::get_if<trace::RngDrawEvent>(&e)) draws.insert(r->draw.site);
      if (std::holds_alternative<trace::SplitEvent>(e)) ++splits;
      if (auto* s = std::get_if<trace::ShuffleEvent>(&e)) shuffled_epochs.push_back(s->epoch);
      if (auto* k = std::get_if<KernelChoice>(&e)) kernels.insert(k->site);
      if (std::holds_alternative<trace::BatchOrderEvent>(e)) ++batches;
      EXPECT_FALSE(std::holds_alternative<trace::ProbeEvent>(e)) << "level step records no probes";
    }
  }
  EXPECT_TRUE(draws.count("init/dense_1.kernel"));
  EXPECT_TRUE(draws.count("init/dense_2.kernel"));
  EXPECT_EQ(splits, 1);
  EXPECT_EQ(shuffled_epochs, (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(kernels.empty());
  EXPECT_EQ(batches, static_cast<int64_t>(back.steps.size())) << "one loader decision per step";
  // Shuffles of this run come from a recorded stream: the draw is stored, not the permutation.
  for (const auto& e : back.steps.front().events)
    if (auto* s = std::get_if<trace::ShuffleEvent>(&e)) {
      EXPECT_TRUE(s->draw.has_value());
      EXPECT_TRUE(s->permutation.empty());
    }
}

TEST(RecorderTest, DeeperLevelsRecordMoreProbes) {
  auto probes = [](ProbeLevel level) {
    TempFile file("recorder-probes");
    record(file.path(), level);
    size_t n = 0;
    for (const auto& step : read_all(file.path()).steps)
      for (const auto& e : step.events) n += std::holds_alternative<trace::ProbeEvent>(e);
    return n;
  };
  const size_t step = probes(ProbeLevel::step), layer = probes(ProbeLevel::layer),
               op = probes(ProbeLevel::op);
  EXPECT_EQ(step, 0u);
  EXPECT_GT(layer, 0u);
  EXPECT_GT(op, layer);
}

// An environment that holds a name twice (execve takes any list) is recorded with the value getenv gives, the
// first, once: a reader takes a key written twice for a header changed after it was written.
TEST(EnvironmentTest, AVariableTheEnvironmentHoldsTwiceIsRecordedOnceWithTheFirstValue) {
  char first[] = "OMP_NUM_THREADS=2";
  char second[] = "OMP_NUM_THREADS=3";
  char* list[] = {first, second, nullptr};
  char** const saved = environ;
  environ = list;
  const Environment env = capture_environment(1, "generic", "default", "cpu");
  environ = saved;
  std::vector<std::string> values;
  for (const auto& [key, value] : env)
    if (key == "env.OMP_NUM_THREADS") values.push_back(value);
  EXPECT_EQ(values, std::vector<std::string>{"2"});
}

// A completed run's trace keeps its final state, which a reader looks for: finish without it, where no
// checkpoint holds it, writes no footer and says which call records it.
TEST(RecorderTest, FinishingACompletedRunWithoutItsFinalStateIsRefused) {
  TempFile file("recorder-nofinal");
  auto rec = make_recorder(file.path(), ProbeLevel::step, 0);
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.hooks = rec.get();
  opts.policy = Policy::deterministic;
  auto t = Training::create(config(kShort), opts);
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_TRUE((*t)->fit().ok());
  const Status done = rec->finish(true, "completed");
  ASSERT_FALSE(done.ok());
  EXPECT_NE(done.error().message.find("the run completed, but its final state (after step " +
                                      std::to_string((*t)->step()) + ") is not in the trace"),
            std::string::npos)
      << done.error().message;
  EXPECT_NE(done.error().message.find("finish(training.state(), true, \"completed\") records it"),
            std::string::npos)
      << done.error().message;
  // With the state, it is written, and reads back whole.
  ASSERT_TRUE(rec->finish((*t)->state(), true, "completed").ok());
  auto reader = trace::TraceReader::open(file.path());
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  for (;;) {
    auto m = (*reader)->next();
    ASSERT_TRUE(m.ok()) << m.error().message;
    if (!m->has_value()) break;
  }
}

TEST(RecorderTest, CheckpointsEveryNStepsResumeToTheSameParameters) {
  TempFile file("recorder-ckpt");
  const TrainedRun run = record(file.path(), ProbeLevel::step, 10);
  const ReadBack back = read_all(file.path());
  // The initial state, one every 10 steps, and the final state: 45 steps are no multiple of 10.
  ASSERT_EQ(run.steps % 10, 5);
  ASSERT_EQ(back.checkpoints.size(), static_cast<size_t>(run.steps / 10) + 2);
  for (size_t i = 0; i + 1 < back.checkpoints.size(); ++i)
    EXPECT_EQ(back.checkpoints[i].step, 10 * int64_t(i));
  EXPECT_EQ(back.checkpoints.back().step, run.steps);

  // Resume from the third checkpoint (after 20 steps) in a fresh run: it must end where the recorded run
  // ended; from the initial state too.
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.policy = Policy::deterministic;
  auto t = Training::create(config(kShort), opts);
  ASSERT_TRUE(t.ok());
  Status restored = (*t)->restore(back.checkpoints.at(2));
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  ASSERT_TRUE((*t)->fit().ok());
  EXPECT_EQ(param_digests(**t), run.final_params);
  auto again = Training::create(config(kShort), opts);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->restore(back.checkpoints.at(0)).ok());
  ASSERT_TRUE((*again)->fit().ok());
  EXPECT_EQ(param_digests(**again), run.final_params);
}

// A trace that cannot be written stops the run before its first step, with the error naming the file: a
// folder that does not exist, or a device that refuses every write (as a full disk does).
TEST(RecorderTest, UnwritableTraceStopsTheRunWithAnErrorNamingTheFile) {
  // A path that is not a regular file is refused before the run is set up.
  RecordOptions device;
  device.path = "/dev/full";
  auto refused = Recorder::create(config(kShort), device);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "/dev/full: not a regular file (it is a character device); a trace needs a file path");
  for (const std::string path : {"/nonexistent-trainrr-dir/run.trr"}) {
    auto rec = make_recorder(path, ProbeLevel::step, 0);
    KernelRegistry registry;
    register_cpu_kernels(registry);
    TrainingOptions opts;
    opts.registry = &registry;
    opts.hooks = rec.get();
    auto t = Training::create(config(kShort), opts);
    ASSERT_TRUE(t.ok()) << t.error().message;
    Status started = rec->start();
    ASSERT_FALSE(started.ok()) << path;
    EXPECT_NE(started.error().message.find(path), std::string::npos) << started.error().message;
    Status fit = (*t)->fit();
    ASSERT_FALSE(fit.ok()) << path;
    EXPECT_NE(fit.error().message.find("stopped at step 0: " + path), std::string::npos) << fit.error().message;
    EXPECT_EQ((*t)->step(), 0);
    Status done = rec->finish(false, "error");
    ASSERT_FALSE(done.ok());
    EXPECT_NE(done.error().message.find(path), std::string::npos) << done.error().message;
  }
}

// A run refused while it is set up (bad data, a model that does not build) must not destroy an earlier trace
// at the path: the file is created only by start(), or by the first step.
TEST(RecorderTest, TraceFileIsUntouchedUntilTheRunStarts) {
  TempFile file("earlier");
  const std::string& path = file.path();
  record(path, ProbeLevel::step);
  auto bytes = [&path] {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string earlier = bytes();
  auto rec = make_recorder(path, ProbeLevel::step, 0);
  uint64_t seed = 7;
  rec->seed(seed, false);
  std::vector<uint32_t> train = {0, 1}, test = {2};
  rec->split("data/split", train, test);
  rec.reset();
  EXPECT_EQ(bytes(), earlier);

  // Without start(), the first step starts the trace.
  record(path, ProbeLevel::layer);
  EXPECT_TRUE(trace::TraceReader::open(path).ok());
  EXPECT_NE(bytes(), earlier);
}

// The header's environment names the device the run ran on, as the configuration asked for it.
TEST(RecorderTest, TheHeaderSaysTheRunsDevice) {
  for (const auto& [asked, recorded] :
       {std::pair<std::string, std::string>{"cpu", "cpu"}, {"cuda", "cuda:0"}}) {
    TempFile file("device");
    RecordOptions o;
    o.path = file.path();
    auto rec = Recorder::create(config({"runtime.device=" + asked}), o);
    ASSERT_TRUE(rec.ok()) << rec.error().message;
    (*rec)->set_runtime(1, "avx2", "default");
    uint64_t seed = 7;
    (*rec)->seed(seed, false);
    ASSERT_TRUE((*rec)->start().ok());
    ASSERT_TRUE((*rec)->finish(false, "stopped").ok());
    auto reader = trace::TraceReader::open(file.path());
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    std::string device = "(missing)";
    for (const auto& [k, v] : (*reader)->header().environment)
      if (k == "device") device = v;
    EXPECT_EQ(device, recorded) << asked;
  }
}

TEST(RecorderTest, AFileThatIsNotATraceIsNeverOverwritten) {
  TempFile file("notes");
  std::ofstream(file.path(), std::ios::binary) << "keep me\n";
  RecordOptions o;
  o.path = file.path();
  auto refused = Recorder::create(config(kShort), o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find(": exists and is not a trainrr trace; refusing to overwrite it"),
            std::string::npos)
      << refused.error().message;
}

TEST(RecorderTest, DatasetDigestIsTheFileDigestAndEmbeddingKeepsTheBytes) {
  const RunConfig c = config({});
  auto plain = describe_datasets(c.data, false);
  auto embedded = describe_datasets(c.data, true);
  ASSERT_TRUE(plain.ok() && embedded.ok());
  ASSERT_EQ(plain->size(), 1u);
  auto d = trace::digest128_file(c.data.path);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*plain)[0].digest, *d);
  EXPECT_EQ((*plain)[0].size_bytes, std::filesystem::file_size(c.data.path));
  EXPECT_TRUE((*plain)[0].embedded.empty());
  EXPECT_EQ((*embedded)[0].embedded.size(), (*plain)[0].size_bytes);
  EXPECT_EQ(trace::digest128_bytes((*embedded)[0].embedded), *d);
}

TEST(RecorderTest, MissingDataFileIsAnErrorNamingIt) {
  DataConfig data;
  data.source = "csv";
  data.path = "/nonexistent-trainrr-dir/data.csv";
  auto r = describe_datasets(data, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(data.path), std::string::npos) << r.error().message;
}

TEST(EnvironmentTest, NumericsVariablesAreRecognisedByPrefix) {
  EXPECT_TRUE(numerics_variable("OPENBLAS_CORETYPE"));
  EXPECT_TRUE(numerics_variable("OMP_NUM_THREADS"));
  EXPECT_TRUE(numerics_variable("CUBLAS_WORKSPACE_CONFIG"));
  EXPECT_TRUE(numerics_variable("NVIDIA_TF32_OVERRIDE"));
  EXPECT_TRUE(numerics_variable("TRAINRR_ANYTHING"));
  EXPECT_FALSE(numerics_variable("HOME"));
  EXPECT_FALSE(numerics_variable("PATH"));
  // Where the CUDA toolkit lies is no numerics setting; which device and how launches run are.
  EXPECT_FALSE(numerics_variable("CUDA_HOME"));
  EXPECT_FALSE(numerics_variable("CUDA_PATH"));
  EXPECT_FALSE(numerics_variable("CUDA_TOOLKIT_ROOT_DIR"));
  EXPECT_TRUE(numerics_variable("CUDA_VISIBLE_DEVICES"));
  EXPECT_TRUE(numerics_variable("CUDA_LAUNCH_BLOCKING"));
}

TEST(EnvironmentTest, CaptureHoldsTheRunsThreadsIsaAndNumericsVariables) {
  ::setenv("TRAINRR_RECORDER_TEST", "on", 1);
  const Environment env = capture_environment(3, "avx2", "deterministic", "cpu");
  ::unsetenv("TRAINRR_RECORDER_TEST");
  auto value = [&env](const std::string& k) -> std::string {
    for (const auto& [key, v] : env)
      if (key == k) return v;
    return "(missing)";
  };
  EXPECT_EQ(value("threads"), "3");
  EXPECT_EQ(value("isa"), "avx2");
  EXPECT_EQ(value("policy"), "deterministic");
  EXPECT_EQ(value("device"), "cpu");
  EXPECT_EQ(value("env.TRAINRR_RECORDER_TEST"), "on");
  EXPECT_NE(value("lib.capnproto"), "(missing)");
  EXPECT_NE(value("lib.openblas"), "(missing)");
  // OpenBLAS's thread count is the run's, as each of its calls sets it.
  EXPECT_NE(value("lib.openblas").find(" threads=3"), std::string::npos) << value("lib.openblas");
#if defined(__GLIBC__)
  EXPECT_EQ(value("lib.libc").rfind("glibc 2.", 0), 0u) << value("lib.libc");
#endif
  EXPECT_NE(value("compiler"), "(missing)");
  for (const auto& [key, v] : env) EXPECT_NE(key, "env.HOME");
}

Result<GpuFound> no_gpu(int) { return Error{"no CUDA driver on this machine"}; }

// Whether the program has the CUDA backend is what it says, whatever the device; the device is the run's.
TEST(EnvironmentTest, CaptureSaysTheRunsDeviceAndWhetherThisProgramHasTheCudaBackend) {
  auto value = [](const Environment& env, const std::string& k) -> std::string {
    std::string found = "(missing)";
    for (const auto& [key, v] : env)
      if (key == k) found = found == "(missing)" ? v : "(twice)";
    return found;
  };
  set_cuda_probe(nullptr);
  Environment env = capture_environment(1, "avx2", "default", "cpu");
  EXPECT_EQ(value(env, "cuda.backend"), "not built");
  EXPECT_EQ(value(env, "device"), "cpu");
  EXPECT_EQ(value(env, "cuda"), "(missing)");
  set_cuda_probe(&no_gpu);
  env = capture_environment(1, "avx2", "default", "cuda:1");
  set_cuda_probe(nullptr);
  EXPECT_EQ(value(env, "cuda.backend"), "built");
  EXPECT_EQ(value(env, "device"), "cuda:1");
}

}  // namespace
}  // namespace trainrr
