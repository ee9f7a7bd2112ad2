// Answers that must be true: the first divergence names the site the comparison with the recording found,
// whatever a re-execution for element values does; a seed that equals the one an unseeded run drew is no
// configuration change; and every note agrees with the cause.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

#include "engine/kernels/kernel_registry.h"
#include "replayer/cause.h"
#include "replayer/replayer.h"
#include "tests/recording_util.h"
#include "tests/test_util.h"
#include "traces/trace_reader.h"

namespace trainrr::testing {
namespace {

const std::string kBreastCancer = example("data/breast_cancer.csv");

// The breast-cancer model of the examples: 30 features, Dense(16, relu), Dense(1, sigmoid), 2 epochs of 15
// batches of 32.
std::string breast_cancer(const std::string& top, const std::string& data, const std::string& runtime) {
  return top + "[data]\npath = \"" + data +
         "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"standardize\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
         "[train]\nepochs = 2\nbatch_size = 32\nloss = \"binary_crossentropy\"\n[runtime]\n" +
         runtime;
}

const std::string kOneThread = "threads = 1\npolicy = \"deterministic\"\n";

bool has(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// The first "site" of a JSON report: the first divergence's.
std::string json_site(const std::string& json) {
  std::smatch m;
  return std::regex_search(json, m, std::regex("\"site\":\"([^\"]*)\"")) ? m[1].str() : "";
}

uint64_t recorded_seed(const std::string& trace) {
  auto r = trace::TraceReader::open(trace);
  EXPECT_TRUE(r.ok());
  return r ? (*r)->header().seed : 0;
}


class RightAnswers : public ::testing::Test {
 protected:
  // The breast-cancer run of seed 3 on one thread, recorded by the command to NAME.trr (from NAME.toml), with
  // `extra` options: its path.
  std::string recorded(const std::string& name, const std::string& extra = "") {
    const std::string trace = dir.file(name + ".trr");
    const CommandResult r = run_trainrr(
        "record " + dir.write(name + ".toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread)) +
        " -o " + trace + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return trace;
  }

  // A level-layer recording whose first layer's matmul ran the reference kernel: a replay with its kernels
  // free selects another there, and differs at that layer's output.
  std::string other_kernel_trace() {
    const std::string cfg = dir.write("run.toml", breast_cancer("seed = 4\n", kBreastCancer, kOneThread));
    const std::string trace = dir.file("kernel.trr");
    EXPECT_EQ(record_via_api(
                  cfg, {}, trace,
                  [](Hooks& in) {
                    return std::make_unique<OtherKernel>(in, "dense_1/matmul.fwd", "f32_matmul__cpu_reference");
                  },
                  ProbeLevel::layer),
              "");
    return trace;
  }
  TempDir dir;
};

const ForceSet kKernelsFree = {true, true, true, true, false};

// The first divergence as the replay's comparison with the recording finds it, without re-execution.
FirstDivergence compared_first(const std::string& trace, ForceSet force) {
  ReplayOptions o;
  o.trace_path = trace;
  o.force = force;
  o.element_detail = false;
  ReplayResult r = replay(o);
  EXPECT_EQ(r.exit_code, 1) << r.error;
  return r.report.first.value_or(FirstDivergence{});
}

struct Located {
  FirstDivergence d;
  std::vector<std::string> notes;
  std::string all_notes() const {
    std::string s;
    for (const std::string& n : notes) s += n + "\n";
    return s;
  }
};

// locate_element for `d`, the recorded configuration on both sides.
Located locate(const std::string& trace, ForceSet force, FirstDivergence d) {
  Located l{std::move(d), {}};
  auto reader = trace::TraceReader::open(trace);
  EXPECT_TRUE(reader.ok());
  if (!reader) return l;
  auto scratch = ScratchDir::create("trainrr-test");
  EXPECT_TRUE(scratch.ok());
  if (!scratch) return l;
  auto rebuilt = rebuild_config((*reader)->header(), {}, "", false, *scratch);
  EXPECT_TRUE(rebuilt.ok());
  if (!rebuilt) return l;
  KernelRegistry registry;
  register_cpu_kernels(registry);
  int64_t executed = 0;
  locate_element(trace, force, rebuilt->config, rebuilt->config, registry, l.d.step, l.d, executed, l.notes);
  return l;
}

// The side "as replayed" runs the kernel the replay ran at each site chosen free: a selection made again (an
// autotune timing again) may pick another, and the op and kernels the cause names would not be the replay's.
TEST_F(RightAnswers, ReExecutionAsReplayedRunsTheKernelsTheReplayRan) {
  // The default policy's candidates: threaded and OpenBLAS kernels among them.
  const std::string cfg = dir.write(
      "default.toml", breast_cancer("seed = 4\n", kBreastCancer, "threads = 1\npolicy = \"default\"\n"));
  const std::string trace = dir.file("default-kernel.trr");
  ASSERT_EQ(record_via_api(
                cfg, {}, trace,
                [](Hooks& in) {
                  return std::make_unique<OtherKernel>(in, "dense_1/matmul.fwd", "f32_matmul__cpu_reference");
                },
                ProbeLevel::layer),
            "");
  const FirstDivergence found = compared_first(trace, kKernelsFree);
  ASSERT_EQ(found.site, "dense_1:out");
  auto reader = trace::TraceReader::open(trace);
  ASSERT_TRUE(reader.ok());
  auto scratch = ScratchDir::create("trainrr-test");
  ASSERT_TRUE(scratch.ok());
  auto rebuilt = rebuild_config((*reader)->header(), {}, "", false, *scratch);
  ASSERT_TRUE(rebuilt.ok());
  KernelRegistry registry;
  register_cpu_kernels(registry);
  // The kernel the side "as replayed" ran at the first op that differs, "" where the step gave the recorded
  // values (a kernel of the reference's bits for this shape).
  auto op_kernel = [&](const std::map<std::string, std::string>* replayed) {
    FirstDivergence d = found;
    std::vector<std::string> notes;
    std::optional<FirstDivergence> op_first;
    int64_t executed = 0;
    locate_element(trace, kKernelsFree, rebuilt->config, rebuilt->config, registry, d.step, d, executed,
                   notes, nullptr, nullptr, &op_first, std::nullopt, replayed);
    if (op_first) EXPECT_EQ(op_first->site, "dense_1/matmul.fwd:out");
    return op_first ? op_first->kernel_replayed : std::string();
  };
  const std::string selected = op_kernel(nullptr);
  ASSERT_FALSE(selected.empty());
  // Each other kernel the replay could have run there: where the step shows the difference, it names that
  // one.
  int named = 0;
  for (const char* other : {"f32_matmul__openblas_sgemm", "f32_matmul__cpu_splitk_threads_avx2",
                            "f32_matmul__cpu_blocked_avx2", "f32_matmul__cpu_splitk_threads_generic",
                            "f32_matmul__cpu_blocked_generic", "f32_matmul__cpu_portable"}) {
    if (other == selected) continue;
    const std::map<std::string, std::string> ran = {{"dense_1/matmul.fwd", other}};
    const std::string kernel = op_kernel(&ran);
    if (kernel.empty()) continue;
    EXPECT_EQ(kernel, other);
    ++named;
  }
  EXPECT_GE(named, 1);
}

// The headline's site is the one the comparison with the recording found; the re-execution adds the values
// at that site, and names the op inside it where the difference shows first as a note.
// A setting float32 makes useless (a learning rate it rounds to 0) is refused for a new run, naming it; a run
// recorded with one (an earlier trainrr took it) replays as it ran.
TEST_F(RightAnswers, ASettingFloat32MakesUselessIsRefusedForANewRunAndReplaysInARecording) {
  const std::string cfg = dir.write("tiny.toml", breast_cancer("seed = 4\n", kBreastCancer, kOneThread));
  const std::string tiny = "train.optimizer.learning_rate=1e-50";
  const CommandResult refused = run_trainrr("record " + cfg + " --set " + tiny + " -o " + dir.file("no.trr"));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(has(refused.output,
                  "train.optimizer.learning_rate is too small: float32, in which the run uses "
                  "it, rounds it to 0"))
      << refused.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("no.trr")));
  const std::string trace = dir.file("tiny.trr");
  ASSERT_EQ(record_via_api(cfg, {tiny}, trace), "");
  const CommandResult replay = run_trainrr("replay " + trace);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_TRUE(has(replay.output, "reproduced bit for bit")) << replay.output;
}

TEST_F(RightAnswers, ReplayHeadlineNamesTheSiteTheComparisonFoundWithItsValues) {
  const std::string trace = other_kernel_trace();
  const std::string free_kernels = " --force rng,split,shuffle,loader --json";
  const CommandResult compared = run_trainrr("replay " + trace + free_kernels + " --no-element-detail");
  ASSERT_EQ(compared.exit_code, 1) << compared.output;
  const std::string site = json_site(compared.output);
  ASSERT_EQ(site, "dense_1:out") << compared.output;
  const CommandResult r = run_trainrr("replay " + trace + free_kernels);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(json_site(r.output), site) << r.output;
  EXPECT_FALSE(has(r.output, "\"index\":null")) << r.output;  // the values at that site
  EXPECT_TRUE(has(r.output, "shows a difference first at dense_1/matmul.fwd:out (forward), which the trace, "
                            "recorded at level layer, does not compare"))
      << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"kernel\"")) << r.output;
}

// A race in the re-execution that plays out otherwise than in the replay: the re-execution differs first
// at an earlier site than the one the comparison found. The site stays; no values are given; a note says why.
TEST_F(RightAnswers, ReExecutionThatDiffersFirstElsewhereLeavesTheSiteAndGivesNoValues) {
  const std::string trace = other_kernel_trace();
  FirstDivergence found = compared_first(trace, kKernelsFree);
  ASSERT_EQ(found.site, "dense_1:out");
  // As a racy replay could have found it: the next layer's output differs first.
  FirstDivergence later = found;
  later.site = "dense_2:out";
  later.layer = "dense_2";
  const Located l = locate(trace, kKernelsFree, later);
  EXPECT_EQ(l.d.site, "dense_2:out") << l.all_notes();
  EXPECT_EQ(l.d.step, found.step);
  EXPECT_EQ(l.d.phase, "forward");
  EXPECT_FALSE(l.d.has_element) << l.all_notes();
  EXPECT_TRUE(has(l.all_notes(), "the first value that differs is at dense_1:out (forward), not at dense_2:out "
                                 "where the replay found the difference"))
      << l.all_notes();
  // The same site as the comparison found: its values.
  const Located same = locate(trace, kKernelsFree, found);
  EXPECT_EQ(same.d.site, "dense_1:out") << same.all_notes();
  EXPECT_TRUE(same.d.has_element) << same.all_notes();
}

// A re-execution that does not differ at all gives no values and says so, without guessing at machines.
TEST_F(RightAnswers, ReExecutionThatDoesNotDifferSaysSoAndGivesNoValues) {
  const std::string trace = other_kernel_trace();
  const FirstDivergence found = compared_first(trace, kKernelsFree);
  const Located l = locate(trace, ForceSet::all(), found);  // the recorded kernel on both sides
  EXPECT_EQ(l.d.site, found.site);
  EXPECT_FALSE(l.d.has_element);
  EXPECT_TRUE(has(l.all_notes(), "gives the recorded values in each of 5 tries: the difference at dense_1:out "
                                 "did not recur"))
      << l.all_notes();
  EXPECT_FALSE(has(l.all_notes(), "recording machine")) << l.all_notes();
}

// Another batch size changes the loss, computed in the forward pass, and from it the gradients and the
// parameters: the loss is the first difference, as the order of a step has it.
TEST_F(RightAnswers, ALossThatDiffersAtTheStepsEndIsNamedBeforeTheParameters) {
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const CommandResult r = run_trainrr("replay " + trace + " --set train.batch_size=16");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, forward, loss\n", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output, "  what: the loss differs: recorded ")) << r.output;
  EXPECT_FALSE(has(r.output, "the parameters differ")) << r.output;
}

// A recorded draw that the replay does not make (dropout at rate 0 draws no mask) comes before the output it
// would have changed: it is the first difference, as diff of the two recordings says, not the layer's output.
TEST_F(RightAnswers, ARecordedDrawTheReplaySkipsIsTheFirstDifference) {
  const std::string cfg = dir.write(
      "run.toml", "seed = 3\n[data]\npath = \"" + kBreastCancer +
                      "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"standardize\"\n"
                      "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n"
                      "[[model.layers]]\ntype = \"Dropout\"\nrate = 0.25\n"
                      "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
                      "[train]\nepochs = 1\nbatch_size = 32\nloss = \"binary_crossentropy\"\n[runtime]\n" +
                      kOneThread);
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " --level op -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr("record " + cfg + " --level op --set model.layers[1].rate=0 -o " + b).exit_code, 0);
  const CommandResult diff = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(diff.exit_code, 1) << diff.output;
  EXPECT_TRUE(has(diff.output, "(dropout/dropout_1)\n")) << diff.output;
  for (const std::string force : {"", " --force none"}) {
    const CommandResult r = run_trainrr("replay " + a + force + " --set model.layers[1].rate=0");
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(r.output.rfind("diverged at step 0, forward, dropout_1 dropout (dropout/dropout_1)\n", 0), 0u)
        << r.output;
    EXPECT_TRUE(has(r.output,
                    "  what: the recording draws 512 words from stream dropout/dropout_1 at "
                    "dropout/dropout_1 in step 0, a draw the replay did not make\n"))
        << r.output;
    EXPECT_TRUE(
        has(r.output, "  cause: config: the run configuration differs: model.layers[1].rate: 0.25 -> 0"))
        << r.output;
  }
}

// Below level op, the step's end shows that a step differs, not where: the re-execution with every op probed
// finds the op, and the cause is that op's (here a kernel whose result depends on the thread count), not the
// environment's differences in general.
TEST_F(RightAnswers, BelowLevelOpTheCauseIsThatOfTheFirstOpTheReExecutionFinds) {
  const std::string cfg = dir.write(
      "run.toml", breast_cancer("seed = 3\n", kBreastCancer, "threads = 2\npolicy = \"deterministic\"\n"));
  for (const char* level : {"step", "layer"}) {
    const std::string trace = dir.file(std::string(level) + ".trr");
    ASSERT_EQ(record_via_api(
                  cfg, {}, trace,
                  [](Hooks& in) {
                    return std::make_unique<OtherKernel>(in, "dense_1/matmul.bwd_weight",
                                                         "f32_matmul__cpu_splitk_threads_generic");
                  },
                  std::string(level) == "step" ? ProbeLevel::step : ProbeLevel::layer),
              "");
    const CommandResult r = run_trainrr("replay " + trace + " --set runtime.threads=1");
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(has(r.output,
                    "  cause: numeric: at dense_1/matmul.bwd_weight:out (backward), the first op whose "
                    "output differs when step 0 is re-executed with every op probed: same kernel "
                    "f32_matmul__cpu_splitk_threads_generic, same inputs: its result depends on the "
                    "thread count, 2 threads (recorded), 1 (replayed)\n"))
        << r.output;
  }
}

// A recorded kernel that cannot run here is replaced by the same algorithm built for this machine's widest
// instruction set, whether every kernel is forced or only some, under any policy: bisect's trials, which
// force some sites and leave the policy to pick the rest, replace it as `replay --force kernels` does, and
// the set they find reproduces when replayed again.
TEST_F(RightAnswers, AKernelThatCannotRunHereIsReplacedAlikeWhetherAllOrSomeAreForced) {
  if (detect_isa() != Isa::avx512) GTEST_SKIP() << "this CPU lacks AVX-512: nothing recorded here needs it";
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace + " --level op").exit_code, 0);
  const std::string avx2 = "env -u OPENBLAS_CORETYPE TRAINRR_ISA=avx2";
  const CommandResult all = run_trainrr_env(avx2, "replay " + trace + " --set runtime.policy=portable");
  if (!has(all.output, "cannot run here: replayed with "))
    GTEST_SKIP() << "no recorded kernel needed AVX-512 " << all.output;
  EXPECT_TRUE(
      has(all.output, "(at dense_1/matmul.fwd) cannot run here: replayed with f32_matmul__cpu_blocked_avx2"))
      << all.output;
  // Only the kernels forced, the rest left to the portable policy: the same replacement.
  const CommandResult some =
      run_trainrr_env(avx2, "replay " + trace + " --set runtime.policy=portable --force kernels");
  EXPECT_TRUE(
      has(some.output, "(at dense_1/matmul.fwd) cannot run here: replayed with f32_matmul__cpu_blocked_avx2"))
      << some.output;
  EXPECT_EQ(all.exit_code, some.exit_code) << all.output << some.output;
  const CommandResult b = run_trainrr_env(avx2, "bisect " + trace + " --set runtime.policy=portable");
  EXPECT_FALSE(has(b.output, "does not repeat itself")) << b.output;
  EXPECT_FALSE(has(b.output, "no replay command is offered")) << b.output;
  if (all.exit_code == 0) {  // the AVX2 build of the recorded kernels gives the recorded bits here
    ASSERT_EQ(b.exit_code, 1) << b.output;
    EXPECT_TRUE(has(b.output, "kernel:dense_1/matmul.fwd")) << b.output;
    EXPECT_TRUE(has(b.output, "to reproduce bit for bit through step 29, the last recorded; `")) << b.output;
    // The variables it ran under (OPENBLAS_CORETYPE too, where the recording's environment lacked it).
    EXPECT_TRUE(has(b.output, "TRAINRR_ISA=avx2 trainrr replay ")) << b.output;
    EXPECT_TRUE(has(b.output, " --force kernels --set runtime.policy=portable` does")) << b.output;
  }
}

// bisect replays the whole run forced and free: where every step compares the same, the final states are
// compared as replay compares them (a batch normalization's moving statistics at level step), and a --set
// that changes only how many steps run is said, as replay says it.
TEST_F(RightAnswers, BisectComparesTheFinalStateAndSaysWhatAConfigurationDifferenceLeftUncompared) {
  const std::string trace = dir.file("bn.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_bn.toml") +
                        " --set train.epochs=1 --set runtime.policy=deterministic -o " + trace)
                .exit_code,
            0);
  const std::string set = " --set 'model.layers[1].momentum=0.9'";
  const CommandResult r = run_trainrr("replay " + trace + set);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  ASSERT_TRUE(has(r.output, "diverged in the final state, after step 11")) << r.output;
  // Replayed on past its first divergence, the run differs there all the same: not reproduced.
  const CommandResult on = run_trainrr("replay --keep-going " + trace + set);
  EXPECT_EQ(on.exit_code, 1) << on.output;
  EXPECT_TRUE(has(on.output, "diverged in the final state, after step 11")) << on.output;
  const CommandResult b = run_trainrr("bisect " + trace + set);
  EXPECT_EQ(b.exit_code, 1) << b.output;
  EXPECT_TRUE(has(b.output,
                  "\ndiverged in the final state, after step 11, batch_normalization_1 "
                  "(batch_normalization_1.moving_mean)\n  cause: config: "))
      << b.output;
  EXPECT_FALSE(has(b.output, "reproduced")) << b.output;

  // Recorded racy (the default policy, 2 threads): the free replay differs by the race, and the set that
  // undoes the race meets the --set in the final state, where every recorded choice forced differs too.
  const std::string racy = dir.file("bn_racy.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_bn.toml") + " --set train.epochs=1 -o " + racy).exit_code,
            0);
  const CommandResult rb = run_trainrr("bisect " + racy + set);
  EXPECT_EQ(rb.exit_code, 1) << rb.output;
  EXPECT_FALSE(has(rb.output, "does not repeat itself")) << rb.output;
  EXPECT_TRUE(
      has(rb.output, "with every recorded choice forced the run differs at the final state, after step 11") ||
      has(rb.output, "\ndiverged in the final state, after step 11"))
      << rb.output;

  const CommandResult shorter = run_trainrr("bisect " + trace + " --set train.epochs=2");
  EXPECT_EQ(shorter.exit_code, 0) << shorter.output;
  EXPECT_TRUE(has(shorter.output,
                  "note: the configuration differs from the recording's (train.epochs: 1 -> 2), yet "
                  "the 12 steps compared matched it: train.epochs changes how many steps run, not "
                  "what a step computes, and the trace stops first"))
      << shorter.output;
}

// A --set that leaves a recorded draw of the initial weights unmade (a zeros initializer) differs in that
// draw, before any state is compared, as bisect and diff say; resumed from a checkpoint, a split made again
// differs where the replay starts, and a checkpoint the --set's model cannot take names the --set.
TEST_F(RightAnswers, ASetIsNamedWhereTheReplayMeetsIt) {
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace + " --checkpoint-every 10").exit_code, 0);
  const CommandResult zeros =
      run_trainrr("replay " + trace + " --set 'model.layers[0].kernel_initializer=zeros'");
  ASSERT_EQ(zeros.exit_code, 1) << zeros.output;
  EXPECT_EQ(zeros.output.substr(0, zeros.output.find('\n')),
            "diverged at step 0, setup, dense_1 init (init/dense_1.kernel)")
      << zeros.output;
  EXPECT_TRUE(has(zeros.output, "at init/dense_1.kernel in step 0, a draw the replay did not make"))
      << zeros.output;
  EXPECT_FALSE(has(zeros.output, "the draws of the initial weights are the same")) << zeros.output;
  // A layer without its bias: replay and bisect both meet it in the initial state.
  for (const std::string verb : {"replay ", "bisect "}) {
    const CommandResult bias = run_trainrr(verb + trace + " --set 'model.layers[0].use_bias=false'");
    EXPECT_EQ(bias.exit_code, 1) << bias.output;
    EXPECT_TRUE(has(bias.output, "diverged in the initial state, before step 0, dense_1 (dense_1.bias)\n"))
        << bias.output;
  }

  const CommandResult seed = run_trainrr("replay " + trace + " --from-step 15 --set seed=4 --force none");
  ASSERT_EQ(seed.exit_code, 1) << seed.output;
  EXPECT_EQ(seed.output.rfind("diverged at step 10, ", 0), 0u) << seed.output;
  EXPECT_TRUE(has(seed.output.substr(0, seed.output.find('\n')), " data/split")) << seed.output;
  EXPECT_TRUE(has(seed.output,
                  "; recorded with step 0, made again by the set-up of this replay, which resumed "
                  "from the checkpoint at step 10"))
      << seed.output;

  const CommandResult units =
      run_trainrr("replay " + trace + " --from-step 15 --set 'model.layers[0].units=8'");
  EXPECT_EQ(units.exit_code, 2) << units.output;
  EXPECT_TRUE(has(units.output,
                  ": the configuration differs from the recording's (model.layers[0].units: 16 -> 8), "
                  "and the run it sets up cannot resume from the recorded checkpoint at step 10; "
                  "replay from step 0 to compare the two runs"))
      << units.output;
}

// A layer's output that differs in the forward pass is named with the kernels of the ops that can have made
// it: that layer's forward ops and those of the layers before it, not backward ops or later layers'. And at
// level step, a difference in the parameters after an update is not said to be one the trace does not
// compare.
TEST_F(RightAnswers, AKernelCauseNamesOnlyTheSitesThatCanHaveMadeTheDifference) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU has only the generic instruction set";
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + a + " --level layer").exit_code, 0);
  ASSERT_EQ(run_trainrr_env("TRAINRR_ISA=generic", "record " + cfg + " -o " + b + " --level layer").exit_code,
            0);
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  ASSERT_TRUE(has(r.output, "diverged at step 0, forward, dense_1 (dense_1:out)\n")) << r.output;
  EXPECT_TRUE(has(r.output, "  cause: kernel: kernel selections differ: dense_1/matmul.fwd: ")) << r.output;
  const std::string cause = r.output.substr(
      r.output.find("  cause:"), r.output.find('\n', r.output.find("  cause:")) - r.output.find("  cause:"));
  EXPECT_FALSE(has(cause, ".bwd")) << cause;
  EXPECT_FALSE(has(cause, "dense_2/")) << cause;

  const std::string sgd =
      dir.write("sgd.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread) +
                                "[train.optimizer]\ntype = \"sgd\"\nmomentum = 0.9\nlearning_rate = 0.01\n");
  const std::string s = dir.file("sgd.trr");
  ASSERT_EQ(run_trainrr("record " + sgd + " -o " + s).exit_code, 0);
  const CommandResult m = run_trainrr("replay " + s + " --set train.optimizer.momentum=0.5");
  ASSERT_EQ(m.exit_code, 1) << m.output;
  EXPECT_TRUE(has(m.output, "diverged at step 1, update, (all parameters)")) << m.output;
  EXPECT_FALSE(has(m.output, "which the trace, recorded at level step, does not compare")) << m.output;
}

// With every recorded choice forced, bisect's replay gets the recorded draws: a seed given beside a learning
// rate changes nothing it computes, and is named in a note, not in the cause, as replay names it.
TEST_F(RightAnswers, BisectsForcedReplayDoesNotBlameTheSeedItServed) {
  const std::string trace = recorded("seeded");
  const std::string sets = " --set seed=8 --set train.optimizer.learning_rate=0.003";
  for (const std::string& command : {"bisect " + trace + sets, "replay " + trace + sets}) {
    const CommandResult r = run_trainrr(command);
    ASSERT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output,
                    "  cause: config: the run configuration differs: train.optimizer.learning_rate: "
                    "0.001 -> 0.003\n"))
        << command << "\n"
        << r.output;
    EXPECT_TRUE(has(r.output,
                    "note: the configuration differs from the recording's (seed: 3 -> 8), but the "
                    "forced choices"))
        << command << "\n"
        << r.output;
  }
}

// A recorded kernel that cannot run here (another instruction set) makes the recorded run differ on its own:
// a learning rate changed beside it is no longer the cause the replay names, and a note says why.
TEST_F(RightAnswers, AConfigurationDifferenceBesideKernelsThatCannotRunHereIsNotTheWholeCause) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU has only the generic instruction set";
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const CommandResult r = run_trainrr_env("TRAINRR_ISA=generic",
                                          "replay " + trace + " --set train.optimizer.learning_rate=0.005");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  if (!has(r.output, "cannot run here: replayed with "))
    GTEST_SKIP() << "no recorded kernel needed " << r.output;
  EXPECT_TRUE(has(r.output, "  cause: kernel: kernel selections differ: ")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "note: the configuration differs from the recording's too "
                  "(train.optimizer.learning_rate: 0.001 -> 0.005), and can have made this difference "
                  "as well; but the recorded run, re-executed here on its own configuration and data "
                  "with every recorded choice forced, differs from the recording at step 0"))
      << r.output;
  EXPECT_TRUE(has(r.output, "as well: this machine makes a difference without them")) << r.output;
  EXPECT_TRUE(has(r.output, " could not run here and ran as this machine's choice: ")) << r.output;
}

// A changed data row beside kernels that cannot run here, at level step: the loss of step 0 differs first,
// and the recorded run re-executed on its own data with this machine's kernels computes that loss the same
// (it differs only at the update): the loss is the data's doing, and the cause says so; a note names this
// machine's own difference, later in the step.
TEST_F(RightAnswers, ADataDifferenceThatComesFirstInTheStepStaysTheCauseBesideKernelsThatCannotRunHere) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU has only the generic instruction set";
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const CommandResult alone = run_trainrr_env("TRAINRR_ISA=generic", "replay " + trace);
  if (alone.output.rfind("diverged at step 0, update, ", 0) != 0)
    GTEST_SKIP() << "the kernels alone do not differ first at step 0's update here:\n" << alone.output;
  // One value of a row the first batch reads, changed: the scaler, fit on every training row, carries it into
  // every row.
  std::ifstream in(kBreastCancer);
  std::string text, line;
  for (int n = 1; std::getline(in, line); ++n) text += (n == 301 ? "1" + line : line) + "\n";
  const std::string changed = dir.write("changed.csv", text);
  const CommandResult r = run_trainrr_env("TRAINRR_ISA=generic",
                                          "replay " + trace + " --data " + changed + " --allow-data-change");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, forward, loss\n  cause: data: ", 0), 0u) << r.output;
  EXPECT_FALSE(has(r.output, "kernel selections differ too")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "note: the recorded run, re-executed here on its own configuration and data with every "
                  "recorded choice forced, differs from the recording only later in step 0, at update "))
      << r.output;
  EXPECT_TRUE(has(r.output, "this machine makes a difference of its own there, after the one the data made"))
      << r.output;
}

// Within one phase of a step, by layer: a configuration difference at the model's first layer (an activation,
// no kernel) comes before this machine's own difference at the next layer's matmul, and stays the cause.
TEST_F(RightAnswers, AConfigurationDifferenceAtAnEarlierLayerStaysTheCauseBesideKernelsThatCannotRunHere) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU has only the generic instruction set";
  const std::string cfg = dir.write(
      "run.toml", "seed = 3\n[data]\npath = \"" + kBreastCancer +
                      "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"standardize\"\n"
                      "[[model.layers]]\ntype = \"Activation\"\nactivation = \"tanh\"\n"
                      "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n"
                      "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
                      "[train]\nepochs = 1\nbatch_size = 32\nloss = \"binary_crossentropy\"\n[runtime]\n" +
                      kOneThread);
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " --level layer -o " + trace).exit_code, 0);
  const CommandResult alone = run_trainrr_env("TRAINRR_ISA=generic", "replay " + trace);
  if (alone.output.rfind("diverged at step 0, forward, dense_1 ", 0) != 0)
    GTEST_SKIP() << "the kernels alone do not differ first at dense_1 here:\n" << alone.output;
  const CommandResult r = run_trainrr_env("TRAINRR_ISA=generic",
                                          "replay " + trace + " --set 'model.layers[0].activation=sigmoid'");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(
      r.output.rfind("diverged at step 0, forward, activation_1 (activation_1:out)\n  cause: config: the run "
                     "configuration differs: model.layers[0].activation: tanh -> sigmoid\n",
                     0),
      0u)
      << r.output;
  EXPECT_TRUE(has(r.output, "differs from the recording only later in step 0, at forward dense_1"))
      << r.output;
}

// diff takes a step's end in the same order: the loss of two runs with other batch sizes differs first.
TEST_F(RightAnswers, DiffNamesALossThatDiffersBeforeTheParameters) {
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr("record " + cfg + " --set train.batch_size=16 -o " + b).exit_code, 0);
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, forward, loss\n", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output, "  what: the loss of step 0 differs (loss ")) << r.output;
}

// An unseeded run drew its seed; naming that seed in the replay changes nothing, so a loader race is the
// cause, not the configuration.
TEST_F(RightAnswers, SettingTheSeedAnUnseededRunDrewIsNoConfigurationChange) {
  const std::string cfg = dir.write("run.toml", breast_cancer("", kBreastCancer, "threads = 2\npolicy = \"default\"\n"));
  const std::string trace = dir.file("racy.trr");
  ASSERT_EQ(record_via_api(cfg, {}, trace, [](Hooks& in) { return std::make_unique<LastBatchFirst>(in, 14); }), "");
  const std::string seed = std::to_string(recorded_seed(trace));
  const CommandResult r = run_trainrr("replay " + trace + " --force none --set seed=" + seed + " --json");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"loader\"")) << r.output;
  EXPECT_EQ(json_site(r.output), "data/loader") << r.output;
  EXPECT_FALSE(has(r.output, "seed:")) << r.output;  // no configuration difference, in the cause or a note
}

TEST_F(RightAnswers, ReproducedReplayCreditsForcingOnlyWhenItServedTheRecordedValues) {
  const std::string cfg = dir.write("run.toml", breast_cancer("", kBreastCancer, kOneThread));
  const std::string trace = dir.file("unseeded.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const uint64_t drawn = recorded_seed(trace);
  // The seed the run drew, nothing forced: the same run.
  const CommandResult same = run_trainrr("replay " + trace + " --force none --set seed=" + std::to_string(drawn));
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_FALSE(has(same.output, "forced choices")) << same.output;
  EXPECT_FALSE(has(same.output, "configuration differs")) << same.output;
  // Another seed under forced draws: the recorded seed is served in its place.
  const std::string other = std::to_string(drawn == 1 ? 2 : drawn - 1);
  const CommandResult served = run_trainrr("replay " + trace + " --set seed=" + other);
  EXPECT_EQ(served.exit_code, 0) << served.output;
  EXPECT_TRUE(has(served.output, "the forced choices (--force all) serve the recorded values in place of seed"))
      << served.output;
  // Another seed, nothing forced: the configuration is the cause, and it names the seed the run drew.
  const CommandResult changed = run_trainrr("replay " + trace + " --force none --set seed=" + other);
  EXPECT_EQ(changed.exit_code, 1) << changed.output;
  EXPECT_TRUE(has(changed.output, "cause: config: the run configuration differs: seed: " + std::to_string(drawn) +
                                      " (drawn from the OS: the configuration gives none) -> " + other))
      << changed.output;
}

// A --set that gives a key the value it was recorded with changes nothing: the replay says so, rather than
// let a reproduced run pass for one that the change left unchanged. The last --set of a key counts.
TEST_F(RightAnswers, ASetThatChangesNothingIsNamed) {
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const CommandResult same = run_trainrr(
      "replay " + trace + " --set model.layers[0].units=16 --set train.epochs=3 --set train.epochs=2");
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_TRUE(has(same.output,
                  "note: --set model.layers[0].units=16 changes nothing: the recorded configuration "
                  "has model.layers[0].units = 16 already\n"))
      << same.output;
  EXPECT_TRUE(has(same.output,
                  "note: --set train.epochs=2 changes nothing: the recorded configuration has "
                  "train.epochs = 2 already\n"))
      << same.output;
  EXPECT_FALSE(has(same.output, "train.epochs=3")) << same.output;
  const CommandResult other = run_trainrr("replay " + trace + " --set model.layers[0].units=17");
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_FALSE(has(other.output, "changes nothing")) << other.output;
}

// A first difference in the initial weights' draws (another model shape here) is found before any step runs:
// the replay stops there and trains no step of the other model, which may be far larger; its page shows no
// kernel choices it never made. --keep-going trains on.
TEST_F(RightAnswers, ADifferenceInTheInitialWeightsStopsTheReplayBeforeItsFirstStep) {
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const std::string page = dir.file("page.html");
  const CommandResult r = run_trainrr("replay " + trace + " --set model.layers[0].units=17 --html " + page);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, setup, dense_1 init (init/dense_1.kernel)\n", 0), 0u)
      << r.output;
  EXPECT_TRUE(
      has(r.output, "  cause: config: the run configuration differs: model.layers[0].units: 16 -> 17\n"))
      << r.output;
  EXPECT_TRUE(has(r.output, "\nsteps executed: 0\n")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "note: the first difference is in the draws of the initial weights, before step 0 "
                  "runs: the replay stopped there, with no step run (--keep-going trains on)"))
      << r.output;
  std::ifstream in(page);
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(html.empty());
  EXPECT_FALSE(has(html, "chose differently")) << "the replay chose no kernel";
  const CommandResult on = run_trainrr("replay " + trace + " --set model.layers[0].units=17 --keep-going");
  ASSERT_EQ(on.exit_code, 1) << on.output;
  EXPECT_TRUE(has(on.output, "\nsteps executed: 30\n")) << on.output;
  EXPECT_FALSE(has(on.output, "with no step run")) << on.output;
}

// With the data changed, the recorded side of the re-execution runs on the recorded data: the values
// differ, and no note lays the difference on the machine.
TEST_F(RightAnswers, ChangedDataIsTheCauseAndNoNoteSaysOtherwise) {
  const std::string csv = dir.file("bc.csv");
  std::filesystem::copy_file(kBreastCancer, csv);
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", csv, kOneThread));
  const std::string trace = dir.file("a.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  // The first value of the first data row changed.
  std::ifstream in(csv, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t row = text.find('\n') + 1;
  const std::string changed = dir.write("changed.csv", text.substr(0, row) + "19.99" + text.substr(text.find(',', row)));
  const CommandResult r = run_trainrr("replay " + trace + " --data " + changed + " --allow-data-change --json");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"data\"")) << r.output;
  EXPECT_FALSE(has(r.output, "recording machine")) << r.output;
  EXPECT_FALSE(has(r.output, "did not recur")) << r.output;
  EXPECT_FALSE(has(r.output, "\"index\":null")) << r.output;
  // A configuration difference beside it is named for what it is.
  const CommandResult lr = run_trainrr("replay " + trace + " --data " + changed +
                                       " --allow-data-change --set train.optimizer.learning_rate=0.01");
  ASSERT_EQ(lr.exit_code, 1) << lr.output;
  EXPECT_TRUE(has(lr.output, "cause: data")) << lr.output;
  EXPECT_FALSE(has(lr.output, "changes how many steps run")) << lr.output;
  EXPECT_TRUE(has(lr.output, "the configuration differs from the recording's too (train.optimizer.learning_rate:"))
      << lr.output;
  // The recorded file itself changed: the recorded data is not at hand, and the note says so.
  std::filesystem::copy_file(changed, csv, std::filesystem::copy_options::overwrite_existing);
  const CommandResult gone = run_trainrr("replay " + trace + " --allow-data-change");
  ASSERT_EQ(gone.exit_code, 1) << gone.output;
  EXPECT_TRUE(has(gone.output, "cause: data")) << gone.output;
  EXPECT_TRUE(has(gone.output, "no element detail: the recorded run cannot be set up again here, as its data is "
                               "not at hand"))
      << gone.output;
  EXPECT_FALSE(has(gone.output, "recording machine")) << gone.output;
}

// A recorded kernel that differs at the first divergent op is its cause, though the configuration differs
// too: a learning rate or a later layer changes nothing before the update or before that layer.
TEST_F(RightAnswers, AConfigurationDifferenceThatComesAfterTheFirstDifferenceIsNotItsCause) {
  const std::string trace = other_kernel_trace();
  const std::string free_kernels = " --force rng,split,shuffle,loader --no-element-detail";
  const CommandResult r =
      run_trainrr("replay " + trace + free_kernels +
                  " --set train.optimizer.learning_rate=0.01 --set model.layers[1].activation=tanh");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "diverged at step 0, forward, dense_1")) << r.output;
  EXPECT_TRUE(has(r.output, "cause: kernel: ")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "note: the configuration differs from the recording's too "
                  "(model.layers[1].activation: sigmoid -> tanh; train.optimizer.learning_rate: 0.001 -> "
                  "0.01), in nothing the first difference depends on"))
      << r.output;
  // A key of the layer where the difference shows may have caused it.
  const CommandResult own =
      run_trainrr("replay " + trace + free_kernels + " --set model.layers[0].activation=tanh");
  ASSERT_EQ(own.exit_code, 1) << own.output;
  EXPECT_TRUE(has(own.output,
                  "cause: config: the run configuration differs: model.layers[0].activation: relu -> tanh"))
      << own.output;
}

// Data that differs in a row the run only tests on: no value of any step differs, and the report says so
// instead of naming a step.
TEST_F(RightAnswers, DataThatDiffersOnlyInATestRowChangesNoValueAndTheDiffSaysSo) {
  const std::string csv = dir.file("bc.csv");
  std::filesystem::copy_file(kBreastCancer, csv);
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(
      run_trainrr("record " + dir.write("a.toml", breast_cancer("seed = 3\n", csv, kOneThread)) + " -o " + a)
          .exit_code,
      0);
  uint32_t test_row = 0;
  {
    auto reader = trace::TraceReader::open(a);
    ASSERT_TRUE(reader.ok());
    for (bool found = false; !found;) {
      auto rec = (*reader)->next();
      ASSERT_TRUE(rec && *rec);
      if (auto* s = std::get_if<trace::TraceStep>(&(*rec)->value))
        for (const auto& e : s->events)
          if (auto* split = std::get_if<trace::SplitEvent>(&e); split && !split->test.empty()) {
            test_row = split->test[0];
            found = true;
          }
    }
  }
  // That row's first value, changed in a copy of the file (line 0 is the header).
  std::ifstream in(csv, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t row = text.find('\n') + 1;
  for (uint32_t i = 0; i < test_row; ++i) row = text.find('\n', row) + 1;
  const std::string changed =
      dir.write("changed.csv", text.substr(0, row) + "99.5" + text.substr(text.find(',', row)));
  ASSERT_EQ(run_trainrr("record " + dir.write("b.toml", breast_cancer("seed = 3\n", changed, kOneThread)) +
                        " -o " + b)
                .exit_code,
            0);
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind(
                "diverged in the inputs only: no value compared differs (30 steps compared)\n  cause: data: "
                "data file ",
                0),
            0u)
      << r.output;
  // Both copies are at hand: the row that differs is a test row, which no step reads.
  EXPECT_TRUE(has(r.output,
                  "no value of any step compared differs: no step up to step 29 reads a training row "
                  "that differs (only test rows differ)"))
      << r.output;
  EXPECT_FALSE(has(r.output, "note: epoch 1:")) << r.output;  // equal metrics, said again
  const CommandResult json = run_trainrr("diff " + a + " " + b + " --json");
  EXPECT_TRUE(has(json.output, "\"first_divergence\":null")) << json.output;
}

// A dropout layer whose rate is 0 draws no mask: the draw one side lacks is placed in the forward pass,
// where it happens.
TEST_F(RightAnswers, ADrawOneSideLacksIsPlacedInThePhaseItBelongsTo) {
  auto config = [&](const std::string& rate) {
    return "seed = 5\n[data]\npath = \"" + kBreastCancer +
           "\"\nlabel = \"benign\"\nscale = \"standardize\"\n"
           "[[model.layers]]\ntype = \"Dense\"\nunits = 8\nactivation = \"relu\"\n"
           "[[model.layers]]\ntype = \"Dropout\"\nrate = " +
           rate +
           "\n[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
           "[train]\nepochs = 1\nloss = \"binary_crossentropy\"\n[runtime]\n" +
           kOneThread;
  };
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(run_trainrr("record " + dir.write("a.toml", config("0.2")) + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr("record " + dir.write("b.toml", config("0.0")) + " -o " + b).exit_code, 0);
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, forward, ", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output, "dropout/dropout_1")) << r.output;
  EXPECT_TRUE(has(r.output, "cause: config: the run configuration differs: model.layers[1].rate: 0.2 -> 0"))
      << r.output;
}

// Two models that differ in many keys: the text and the JSON give them all, the cause those that reach the
// first difference.
TEST_F(RightAnswers, EveryConfigurationDifferenceIsListedWhereTheCauseNamesOnlySome) {
  const std::string a = recorded("a");
  const std::string b =
      recorded("b",
               " --set 'model.layers=[{type=\"Dense\",units=16,activation=\"relu\"},{type=\"Dropout\","
               "rate=0.5},{type=\"Dense\",units=8,activation=\"tanh\"},{type=\"Dense\",units=1,"
               "activation=\"sigmoid\"}]'");
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\nconfiguration differences:\n  model.layers: 2 -> 4\n")) << r.output;
  EXPECT_TRUE(has(r.output, "  model.layers[3].use_bias: (none) -> true\n")) << r.output;
  // Only the keys each layer takes: neither a Dense nor a Dropout layer has filters.
  EXPECT_FALSE(has(r.output, "model.layers[1].filters")) << r.output;
  // The cause names those that reach the first difference (dense_2's initial values, the second layer in A,
  // the third in B): the keys of the layers up to it in either run.
  const std::string cause =
      r.output.substr(r.output.find("  cause:"), r.output.find("\n  what:") - r.output.find("  cause:"));
  EXPECT_TRUE(has(cause, "cause: config: the run configuration differs: ")) << r.output;
  EXPECT_TRUE(has(cause, "model.layers[1].type: Dense -> Dropout")) << r.output;
  EXPECT_TRUE(has(cause, "model.layers[2].units: (none) -> 8")) << r.output;
  EXPECT_FALSE(has(r.output.substr(0, r.output.find("\nconfiguration differences:")), "model.layers[3]"))
      << r.output;
  const CommandResult json = run_trainrr("diff " + a + " " + b + " --json");
  EXPECT_TRUE(has(json.output, "\"config_differences\":[\"model.layers: 2 -> 4\",")) << json.output;
  EXPECT_TRUE(has(json.output, "\"model.layers[3].use_bias: (none) -> true\"]")) << json.output;
  // Bisect with a --set lists what it changes, as replay does.
  const CommandResult bis = run_trainrr("bisect " + a + " --set seed=4 --json");
  EXPECT_EQ(bis.exit_code, 1) << bis.output;
  EXPECT_TRUE(has(bis.output, "\"config_differences\":[\"seed: 3 -> 4\"]")) << bis.output;
}

// Bisect lists this machine's environment against the recording's, as replay does, whatever it finds: a
// policy that --set changes, which the forced choices make no difference to, is still listed.
TEST_F(RightAnswers, BisectListsTheEnvironmentDifferencesAsReplayDoes) {
  const std::string a = recorded("a");
  const CommandResult bis = run_trainrr("bisect " + a + " --set runtime.policy=default --json");
  EXPECT_EQ(bis.exit_code, 0) << bis.output;
  EXPECT_TRUE(
      has(bis.output,
          "\"environment_differences\":[{\"key\":\"policy\",\"recorded\":\"deterministic\",\"replayed\":"
          "\"default\"}"))
      << bis.output;
}

// A replay whose configuration runs longer than the recorded run says where the recorded run ended and why.
TEST_F(RightAnswers, AReplayLongerThanACompletedRecordingSaysTheRecordedRunEndedThere) {
  const std::string trace = recorded("a");
  const CommandResult r = run_trainrr("replay " + trace + " --set train.epochs=3");
  EXPECT_TRUE(has(r.output,
                  "note: the trace ends after step 29: the recorded run ended there, its schedule done; "
                  "this replay's configuration runs 45 steps"))
      << r.output;
  EXPECT_FALSE(has(r.output, "the recording stopped there")) << r.output;
}

// Another noise level draws the same words and makes other values of them: the configuration is the cause,
// and the divergence's own words do not blame the generator.
TEST_F(RightAnswers, ChangedNoiseLevelIsAConfigurationCauseWithoutBlamingTheGenerator) {
  const std::string cfg =
      dir.write("run.toml", breast_cancer("seed = 7\n[augment]\nnoise_stddev = 0.05\n", kBreastCancer, kOneThread));
  const std::string trace = dir.file("noise.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const CommandResult r = run_trainrr("replay " + trace + " --set augment.noise_stddev=0.06");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cause: config: the run configuration differs: augment.noise_stddev: 0.05 -> 0.06"))
      << r.output;
  // The values' digests on each side, as diff gives them.
  EXPECT_TRUE(
      std::regex_search(r.output, std::regex("\\(the same draw, made into other values: digest [0-9a-f]{16} "
                                             "\\(recorded\\) vs [0-9a-f]{16} \\(replayed\\)\\)")))
      << r.output;
  EXPECT_FALSE(has(r.output, "generator")) << r.output;
}

FirstDivergence same_draw_at_noise() {
  FirstDivergence d;
  d.step = 0;
  d.phase = "input";
  d.kind = "rng";
  d.site = "augment/noise";
  d.detail = "draw at augment/noise: recorded (...), replayed (...) (the same draw, made into other values)";
  d.same_draw = true;
  return d;
}

// The same words making other values: with the configuration the same, the arithmetic is what differs, and
// the cause says so with the environment's differences; with it changed, the configuration is the cause.
TEST(RightAnswersCause, SameDrawWithOtherValuesIsTheConfigurationWhenItDiffersAndTheArithmeticOtherwise) {
  CauseInputs in;
  in.environment.push_back({"compiler", "GCC 12.2.0", "Clang 16.0.6"});
  const Cause arithmetic = classify(same_draw_at_noise(), in);
  EXPECT_EQ(arithmetic.category, "rng");
  EXPECT_TRUE(has(arithmetic.detail, "with the same configuration, the same words make other values")) << arithmetic.detail;
  EXPECT_TRUE(has(arithmetic.detail, "the environment differs in compiler")) << arithmetic.detail;
  in.config_differences.push_back("augment.noise_stddev: 0.05 -> 0.06");
  const Cause config = classify(same_draw_at_noise(), in);
  EXPECT_EQ(config.category, "config");
  EXPECT_FALSE(has(config.detail, "arithmetic")) << config.detail;
}

// A forced split serves the recorded rows, not the recorded draw: another data.split, which draws from the
// split's stream where the recorded one did not, is the cause of the draw the replay makes, as without
// forcing.
TEST_F(RightAnswers, AnotherSplitMethodUnderAForcedSplitIsTheConfigurationsDifference) {
  const std::string trace = recorded("run");
  for (const std::string force : {"", " --force none"}) {
    const CommandResult r = run_trainrr("replay " + trace + " --set data.split=sklearn" + force);
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(
        has(r.output, "  cause: config: the run configuration differs: data.split: philox -> sklearn"))
        << force << "\n"
        << r.output;
    EXPECT_FALSE(has(r.output, "serve the recorded values in its place")) << r.output;
  }
}

// At level step the steps compare no batch normalization's moving statistics: another momentum trains the
// same parameters and ends with other statistics, which the final checkpoints hold and replay and diff
// compare; neither says the runs are the same.
TEST_F(RightAnswers, AnotherMomentumAtLevelStepDivergesInTheFinalState) {
  const std::string sets = " --set train.epochs=1 --set runtime.policy=deterministic --set runtime.threads=1";
  const std::string a = dir.file("bn.trr"), b = dir.file("bn_m.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_bn.toml") + sets + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr("record " + example("digits_bn.toml") + sets +
                        " --set model.layers[1].momentum=0.9 -o " + b)
                .exit_code,
            0);
  const CommandResult replay = run_trainrr("replay " + a + " --set model.layers[1].momentum=0.9");
  ASSERT_EQ(replay.exit_code, 1) << replay.output;
  EXPECT_EQ(replay.output.rfind("diverged in the final state, after step ", 0), 0u) << replay.output;
  EXPECT_TRUE(has(replay.output,
                  "(batch_normalization_1.moving_mean)\n  cause: config: the run configuration "
                  "differs: model.layers[1].momentum: 0.99 -> 0.9\n"))
      << replay.output;
  EXPECT_TRUE(has(replay.output, "the step whose update first made it differ is not known")) << replay.output;
  const CommandResult diff = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(diff.exit_code, 1) << diff.output;
  EXPECT_EQ(diff.output.rfind("diverged in the final state, after step ", 0), 0u) << diff.output;
  EXPECT_TRUE(has(diff.output,
                  "  cause: config: the run configuration differs: model.layers[1].momentum: 0.99 -> 0.9"))
      << diff.output;
  // The same run ends in the same state.
  EXPECT_EQ(run_trainrr("replay " + a).exit_code, 0);
  EXPECT_EQ(run_trainrr("diff " + a + " " + a).exit_code, 0);
}

// Optimizer slots that only one side keeps (SGD with a momentum of 0 keeps none) make no step differ; the
// final states do, and the optimizer's key is their cause.
TEST_F(RightAnswers, OptimizerSlotsOnOneSideAreTheFinalStatesDifferenceAndTheKeyItsCause) {
  const std::string sgd = " --set train.optimizer.type=sgd --set train.optimizer.momentum=0";
  const std::string a = recorded("sgd", sgd);
  const std::string b = recorded("momentum", sgd + " --set train.optimizer.momentum=1e-30");
  const CommandResult diff = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(diff.exit_code, 1) << diff.output;
  EXPECT_EQ(diff.output.rfind("diverged in the final state, after step 29, dense_1 (momentum/dense_1.", 0),
            0u)
      << diff.output;
  EXPECT_TRUE(has(diff.output,
                  "  cause: config: the run configuration differs: train.optimizer.momentum: 0 -> 1e-30"))
      << diff.output;
  const CommandResult json = run_trainrr("diff --json " + a + " " + b);
  EXPECT_TRUE(has(json.output, "\"layer\":\"dense_1\"")) << json.output;
}

// Two seeds draw other initial weights: the parameters were never identical, and diff says why.
TEST_F(RightAnswers, DiffOfTwoSeedsSaysTheInitialWeightsDiffer) {
  const std::string a = recorded("a");
  const std::string b = recorded("b", " --set seed=4");
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(
      has(r.output, "trainable parameters identical through step: none: the initial weights differ\n"))
      << r.output;
}

// A level-step trace holds no op's output: where the configuration differs and kernel selections differ too,
// either can have made the first difference, and the cause names both, in either order and without
// re-execution alike.
TEST_F(RightAnswers, AtLevelStepKernelSelectionsThatDifferBesideTheConfigurationAreNamedToo) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU has only the generic instruction set";
  const std::string cfg = dir.write("run.toml", breast_cancer("seed = 3\n", kBreastCancer, kOneThread));
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr_env("TRAINRR_ISA=generic",
                            "record " + cfg + " -o " + b + " --set train.optimizer.learning_rate=0.002")
                .exit_code,
            0);
  for (const std::string& command : {"diff " + a + " " + b, "diff " + b + " " + a}) {
    const CommandResult r = run_trainrr(command);
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(
        has(r.output, "  cause: config: the run configuration differs: train.optimizer.learning_rate: "))
        << r.output;
    EXPECT_TRUE(has(r.output, "; kernel selections differ too (instruction set ")) << r.output;
    EXPECT_TRUE(has(r.output, ", which can have made it as well: ")) << r.output;
    EXPECT_TRUE(has(r.output, "dense_1/matmul.fwd: f32_matmul__cpu_blocked_")) << r.output;
    EXPECT_TRUE(has(r.output, "to tell which made the first difference: record with --level op")) << r.output;
  }
  // A difference no kernel computes (the initial weights' draw, before any step) names no kernel beside it.
  const std::string c = dir.file("c.trr");
  ASSERT_EQ(run_trainrr_env("TRAINRR_ISA=generic", "record " + cfg + " -o " + c + " --set seed=4").exit_code,
            0);
  const CommandResult seeded = run_trainrr("diff " + a + " " + c);
  ASSERT_EQ(seeded.exit_code, 1) << seeded.output;
  EXPECT_TRUE(has(seeded.output, "  cause: config: the run configuration differs: seed: 3 -> 4\n"))
      << seeded.output;
  EXPECT_FALSE(has(seeded.output, "kernel selections differ too")) << seeded.output;
  const CommandResult r =
      run_trainrr_env("TRAINRR_ISA=generic",
                      "replay " + a +
                          " --force rng,split,shuffle,loader --set train.optimizer.learning_rate=0.002 "
                          "--no-element-detail");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "; kernel selections differ too (instruction set ")) << r.output;
}

// A stratified split reads the labels; served from the recording, it takes the recorded rows whatever the
// labels are, so a changed label reaches the run where a step first reads its row, never before any step.
TEST_F(RightAnswers, AChangedLabelUnderAServedStratifiedSplitReachesTheStepThatReadsItsRow) {
  const std::string trace = dir.file("m.trr");
  ASSERT_EQ(
      run_trainrr("record " + example("digits_mlp.toml") +
                  " --set train.epochs=1 --set runtime.threads=1 --set runtime.policy=deterministic -o " +
                  trace)
          .exit_code,
      0);
  // Data row 1's digit (line 2 of the file, under the header; the last column), changed.
  std::ifstream in(example("data/digits.csv"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t row1 = text.find('\n') + 1, end = text.find('\n', row1);
  const size_t last = text.rfind(',', end) + 1;
  text.replace(last, end - last, std::to_string((std::stoi(text.substr(last, end - last)) + 1) % 10));
  const std::string changed = dir.write("digits.csv", text);
  const CommandResult r = run_trainrr("replay " + trace + " --data " + changed + " --allow-data-change");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "  cause: data: ")) << r.output;
  EXPECT_TRUE(has(
      r.output,
      " is the first to read a training row that differs (data row 0 (counting from 0), line 2 of the file)"))
      << r.output;
  EXPECT_FALSE(has(r.output, "the data differs before any step runs")) << r.output;
  // Beside a batch size that differs from step 0 on, the label is no cause of that step's forward pass.
  const CommandResult both = run_trainrr("replay " + trace + " --data " + changed +
                                         " --allow-data-change --set train.batch_size=16");
  ASSERT_EQ(both.exit_code, 1) << both.output;
  EXPECT_TRUE(has(both.output,
                  "  cause: config: the run configuration differs: train.batch_size: 32 -> 16; the "
                  "data differs too, but cannot have made this difference"))
      << both.output;
}

}  // namespace
}  // namespace trainrr::testing
