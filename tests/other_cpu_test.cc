// Replays on other CPUs, for real: the built trainrr runs under qemu's user-mode emulator with another CPU
// model (qemu-x86_64-static -cpu Nehalem ...). CPUID then reports that CPU's flags and an instruction it lacks
// raises SIGILL, so these tests see what a user with that CPU sees. Skipped where qemu is not installed.
//
// The models: Haswell (AVX2, FMA), SandyBridge (AVX, no FMA), Nehalem (SSE4.2).

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "engine/kernels/kernel_registry.h"
#include "tests/test_util.h"

namespace trainrr::testing {
namespace {

// The emulator, or "" where none is installed.
std::string qemu() {
  for (const char* name : {"qemu-x86_64-static", "qemu-x86_64"}) {
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "/usr/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
      const std::filesystem::path p = std::filesystem::path(dir) / name;
      if (std::filesystem::exists(p)) return p.string();
    }
  }
  return "";
}

// The output without qemu's own warnings (TCG lacks a few of a model's flags that no user program reads).
std::string without_qemu_warnings(const std::string& text) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);)
    if (line.find("qemu-x86_64") == std::string::npos || line.find("warning:") == std::string::npos)
      out += line + "\n";
  return out;
}

// `ENV trainrr ARGS` on an emulated `cpu`.
CommandResult run_on(const std::string& cpu, const std::string& env, const std::string& args) {
  CommandResult r = run_trainrr_env(env + " " + qemu() + " -cpu " + cpu, args);
  r.output = without_qemu_warnings(r.output);
  return r;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

constexpr const char* kReproduced = "reproduced bit for bit (45 steps compared)";

class OtherCpu : public ::testing::Test {
 protected:
  void SetUp() override {
#if TRAINRR_ASAN
    GTEST_SKIP() << "built with AddressSanitizer, whose shadow memory qemu's user-mode emulator does not map: "
                    "the replays on other CPU models run in the Release build's tests";
#endif
    if (qemu().empty())
      GTEST_SKIP() << "qemu-x86_64-static is not installed (Debian: qemu-user-static): the replays on other CPU "
                      "models are not run";
  }
  // The digits MLP for one epoch (45 steps), recorded natively under `policy`.
  std::string record_native(const std::string& policy, const std::string& name) {
    const std::string trace = dir.file(name);
    const CommandResult r = run_trainrr("record " + example("digits_mlp.toml") + " --set train.epochs=1" +
                                        " --set runtime.policy=" + policy + " -o " + trace);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return trace;
  }
  TempDir dir;
};

TEST_F(OtherCpu, APortableRecordingReproducesOnEveryModelWithOneAndTwoThreads) {
  const std::string trace = record_native("portable", "portable.trr");
  for (const char* cpu : {"Haswell", "SandyBridge", "Nehalem"})
    for (const char* threads : {"1", "2"}) {
      const CommandResult r = run_on(cpu, "", "replay " + trace + " --set runtime.threads=" + threads);
      EXPECT_EQ(r.exit_code, 0) << cpu << ", " << threads << " threads:\n" << r.output;
      EXPECT_TRUE(has(r.output, kReproduced)) << cpu << ", " << threads << " threads:\n" << r.output;
      // The same kernels run everywhere: nothing was substituted.
      EXPECT_FALSE(has(r.output, "cannot run here")) << cpu << ":\n" << r.output;
    }
}

// The conv net (Conv2D, MaxPool2D) and the batch-normalized one, one epoch each, on the oldest model.
TEST_F(OtherCpu, PortableConvolutionsAndBatchNormalizationReproduceOnNehalem) {
  for (const char* example_name : {"digits_cnn.toml", "digits_bn.toml"}) {
    const std::string trace = dir.file(std::string(example_name) + ".trr");
    const CommandResult rec = run_trainrr("record " + example(example_name) +
                                          " --set train.epochs=1 --set runtime.policy=portable -o " + trace);
    ASSERT_EQ(rec.exit_code, 0) << rec.output;
    const CommandResult r = run_on("Nehalem", "", "replay " + trace + " --set runtime.threads=1");
    EXPECT_EQ(r.exit_code, 0) << example_name << ":\n" << r.output;
    EXPECT_TRUE(has(r.output, "reproduced bit for bit")) << example_name << ":\n" << r.output;
  }
}

TEST_F(OtherCpu, ADeterministicRecordingReproducesWhereTheKernelsSumAlikeAndNamesTheCauseWhereNot) {
  const Isa native = detect_isa();
  if (native == Isa::generic) GTEST_SKIP() << "this CPU has no AVX2: its deterministic kernels are the generic ones";
  const std::string trace = record_native("deterministic", "deterministic.trr");

  // Haswell's AVX2 kernels compute the same fused chains as AVX-512's: reproduced, each substitution noted.
  const CommandResult haswell = run_on("Haswell", "", "replay " + trace);
  EXPECT_EQ(haswell.exit_code, 0) << haswell.output;
  EXPECT_TRUE(has(haswell.output, kReproduced)) << haswell.output;
  if (native == Isa::avx512) {
    EXPECT_TRUE(has(haswell.output, "cannot run here: replayed with f32_matmul__cpu_blocked_avx2"))
        << haswell.output;
  }

  // SandyBridge and Nehalem lack FMA: the generic kernels multiply, then add. The cause says so.
  for (const char* cpu : {"SandyBridge", "Nehalem"}) {
    const CommandResult r = run_on(cpu, "", "replay " + trace);
    EXPECT_EQ(r.exit_code, 1) << cpu << ":\n" << r.output;
    EXPECT_TRUE(has(r.output, "diverged at step 0")) << cpu << ":\n" << r.output;
    EXPECT_TRUE(has(r.output, "cause: kernel: kernel selections differ: ")) << cpu << ":\n" << r.output;
    EXPECT_TRUE(has(r.output, "vs f32_matmul__cpu_blocked_generic")) << cpu << ":\n" << r.output;
    EXPECT_TRUE(has(r.output, std::string("instruction set ") + isa_name(native) + " vs generic"))
        << cpu << ":\n" << r.output;
  }
}

TEST_F(OtherCpu, ARecordingMadeUnderEmulationReplaysNatively) {
  for (const char* policy : {"portable", "deterministic"}) {
    const std::string trace = dir.file(std::string("nehalem-") + policy + ".trr");
    const CommandResult rec = run_on("Nehalem", "", "record " + example("digits_mlp.toml") +
                                                        " --set train.epochs=1 --set runtime.policy=" + policy +
                                                        " -o " + trace);
    ASSERT_EQ(rec.exit_code, 0) << rec.output;
    const CommandResult show = run_trainrr("show " + trace);
    EXPECT_TRUE(has(show.output, "Nehalem")) << show.output;  // the CPU it ran on, from CPUID
    EXPECT_TRUE(has(show.output, "isa: generic")) << show.output;
    // Forced, the generic kernels run here too; portable ones are the same everywhere.
    const CommandResult r = run_trainrr("replay " + trace);
    EXPECT_EQ(r.exit_code, 0) << policy << ":\n" << r.output;
    EXPECT_TRUE(has(r.output, kReproduced)) << policy << ":\n" << r.output;
  }
}

// OPENBLAS_CORETYPE=Haswell makes OpenBLAS load AVX2 code; on a Nehalem its first product would die of SIGILL.
// trainrr leaves OpenBLAS out there, says so, and goes on with its own kernels.
TEST_F(OtherCpu, AnOpenBlasCoreTheCpuCannotRunIsLeftOutNotASignal) {
  const std::string note = "OPENBLAS_CORETYPE=Haswell makes OpenBLAS run its Haswell code, which this CPU";
  // Autotune times every candidate, OpenBLAS among them, on its first call.
  const CommandResult train =
      run_on("Nehalem", "OPENBLAS_CORETYPE=Haswell",
             "train " + example("digits_mlp.toml") + " --set train.epochs=1 --set runtime.policy=autotune");
  EXPECT_EQ(train.exit_code, 0) << train.output;
  EXPECT_TRUE(has(train.output, note)) << train.output;
  EXPECT_TRUE(has(train.output, "f32_matmul__openblas_sgemm is left out of the kernels")) << train.output;

  // A trace whose autotune may have picked OpenBLAS: the replay answers (reproduced or a divergence), with
  // the note, and never by a signal.
  const std::string trace = dir.file("autotune.trr");
  ASSERT_EQ(run_trainrr_env("OPENBLAS_CORETYPE=Haswell", "record " + example("digits_mlp.toml") +
                                                             " --set train.epochs=1 --set runtime.policy=autotune"
                                                             " -o " + trace)
                .exit_code,
            0);
  const CommandResult r = run_on("Nehalem", "OPENBLAS_CORETYPE=Haswell", "replay " + trace);
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.exit_code << "\n" << r.output;
  EXPECT_TRUE(has(r.output, note)) << r.output;
  if (has(r.output, "f32_matmul__openblas_sgemm (at ")) {
    EXPECT_TRUE(has(r.output, "cannot run here: replayed with")) << r.output;
  }
}

// A replay restarts itself with the recording's OPENBLAS_CORETYPE (OpenBLAS reads it only as it loads). Under
// qemu's user-mode emulator the restarted program runs natively, on the host's CPU, not the emulated one: its
// answer would be the host's. The restart sees that and stops with exit 3, saying how to run without one.
TEST_F(OtherCpu, ARestartThatLeavesTheEmulatedCpuStopsInsteadOfAnsweringForTheHost) {
  // The digits MLP recorded here with OpenBLAS's Nehalem code, under `policy`: its trace.
  auto recorded = [&](const std::string& policy) {
    const std::string trace = dir.file("nehalem_core_" + policy + ".trr");
    EXPECT_EQ(run_trainrr_env("OPENBLAS_CORETYPE=Nehalem",
                              "record " + example("digits_mlp.toml") +
                                  " --set train.epochs=1 --set runtime.policy=" + policy + " -o " + trace)
                  .exit_code,
              0);
    return trace;
  };
  const std::string trace = recorded("autotune");
  const CommandResult r = run_on("SandyBridge", "env -u OPENBLAS_CORETYPE", "replay " + trace);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_FALSE(has(r.output, "reproduced")) << r.output;
  EXPECT_TRUE(has(r.output, "trainrr restarted itself with OPENBLAS_CORETYPE=Nehalem")) << r.output;
  EXPECT_TRUE(has(r.output, "Sandy Bridge")) << r.output;  // the CPU it was started on
  EXPECT_TRUE(has(r.output, "Set OPENBLAS_CORETYPE=Nehalem before starting trainrr")) << r.output;
  // As the message says: set beforehand, no restart, and the replay runs on the emulated CPU, whose kernels
  // differ from the recording's AVX-512 or AVX2 ones.
  const CommandResult set = run_on("SandyBridge", "OPENBLAS_CORETYPE=Nehalem", "replay " + trace);
  EXPECT_FALSE(has(set.output, "restarted")) << set.output;
  EXPECT_TRUE(has(set.output, "isa: ")) << set.output;
  EXPECT_TRUE(has(set.output, "(Sandy Bridge) (replayed)")) << set.output;
  // Only autotune picks OpenBLAS: a deterministic or default run calls none, and there is nothing to restart
  // for; no note says what code the recording's OpenBLAS ran.
  for (const char* policy : {"deterministic", "default"}) {
    const CommandResult d = run_on("SandyBridge", "env -u OPENBLAS_CORETYPE", "replay " + recorded(policy));
    EXPECT_NE(d.exit_code, 3) << policy << ":\n" << d.output;
    EXPECT_FALSE(has(d.output, "restarted")) << policy << ":\n" << d.output;
    EXPECT_FALSE(has(d.output, "the recording's OpenBLAS ran")) << policy << ":\n" << d.output;
    EXPECT_TRUE(has(d.output, "(Sandy Bridge) (replayed)")) << policy << ":\n" << d.output;
  }
}

// OPENBLAS_CORETYPE may name code whose instruction sets trainrr does not know (Bulldozer's and Piledriver's
// FMA4, which a Zen or an Intel CPU lacks): OpenBLAS takes it, and would die of SIGILL. trainrr leaves it
// out, and a recording made so says that its OpenBLAS ran nothing.
TEST(OpenBlasCoretype, ACoreTrainrrDoesNotKnowIsLeftOutWhereTheUserNamedIt) {
  TempDir dir;
  const std::string trace = dir.file("piledriver.trr");
  const CommandResult rec = run_trainrr_env(
      "OPENBLAS_CORETYPE=Piledriver", "record " + example("digits_mlp.toml") +
                                          " --set train.epochs=1 --set runtime.policy=autotune -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  // An OpenBLAS built without Piledriver's code loads its own pick: nothing is left out then.
  if (!has(rec.output, "makes OpenBLAS run its Piledriver code"))
    GTEST_SKIP() << "this OpenBLAS does not load Piledriver code:\n" << rec.output;
  EXPECT_TRUE(has(rec.output,
                  "may not run (trainrr does not know the instruction sets it takes): "
                  "f32_matmul__openblas_sgemm is left out of the kernels"))
      << rec.output;
  EXPECT_TRUE(has(run_trainrr("show " + trace).output, "(left out: not run)"));
  const CommandResult r = run_trainrr("replay " + trace);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, kReproduced)) << r.output;
  EXPECT_FALSE(has(r.output, "the recording's OpenBLAS ran")) << r.output;
  EXPECT_FALSE(has(r.output, "restarted")) << r.output;
}

// Not emulated: a deterministic recording replayed with the portable policy (the kernels forced) differs where
// the portable exp and log round otherwise than glibc's, and the cause says that, not a nondeterministic kernel.
TEST(PortablePolicy, AReplayUnderAnotherPolicyNamesThePortableElementwiseFunctions) {
  TempDir dir;
  const std::string trace = dir.file("det.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_mlp.toml") +
                        " --set train.epochs=1 --set runtime.policy=deterministic --level op -o " + trace)
                .exit_code,
            0);
  const CommandResult r = run_trainrr("replay " + trace + " --set runtime.policy=portable");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "softmax.fwd")) << r.output;
  EXPECT_TRUE(has(r.output, "the policy differs, deterministic (recorded) vs portable (replayed)")) << r.output;
  EXPECT_TRUE(has(r.output, "trainrr's own exp, log, log1p, tanh and powers instead of glibc's")) << r.output;
}

// A lower instruction set beside another policy: the recorded kernels' stand-ins compute the same bits (the
// instruction set alone reproduces), and the first op whose output differs is the softmax, where the
// portable exp rounds otherwise. The cause is the policy's, not the kernel selections of ops whose outputs
// were the same. Free (--force none), the kernel that ran at the first op that differs is named as what ran:
// the recorded one's stand-in, and the policy that picked the other side's.
TEST(PortablePolicy, ALowerInstructionSetBesideThePolicyIsNotBlamedForThePolicysDifference) {
  const Isa native = detect_isa();
  if (native != Isa::avx512 && native != Isa::avx2)
    GTEST_SKIP() << "this CPU has no AVX2: TRAINRR_ISA=avx2 cannot run here";
  TempDir dir;
  const std::string trace = dir.file("det.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_mlp.toml") +
                        " --set train.epochs=1 --set runtime.policy=deterministic -o " + trace)
                .exit_code,
            0);
  const CommandResult alone = run_trainrr_env("TRAINRR_ISA=avx2", "replay " + trace);
  EXPECT_EQ(alone.exit_code, 0) << alone.output;
  const CommandResult both =
      run_trainrr_env("TRAINRR_ISA=avx2", "replay " + trace + " --set runtime.policy=portable");
  ASSERT_EQ(both.exit_code, 1) << both.output;
  EXPECT_TRUE(has(both.output,
                  "cause: numeric: at dense_2/softmax.fwd:out (forward), the first op whose output "
                  "differs when step 1 is re-executed with every op probed: same kernel, same "
                  "inputs, different output: the policy differs"))
      << both.output;
  EXPECT_FALSE(has(both.output, "kernel selections differ")) << both.output;
  // The page's command to reproduce it carries the variable: run without it, the replay reproduces.
  const std::string page = dir.file("page.html");
  ASSERT_EQ(
      run_trainrr_env("TRAINRR_ISA=avx2", "replay " + trace + " --set runtime.policy=portable --html " + page)
          .exit_code,
      1);
  std::ifstream in(page);
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(has(html, "<span>TRAINRR_ISA=avx2</span> <span>trainrr</span> <span>replay</span>")) << html;

  const CommandResult forced_none =
      run_trainrr_env("TRAINRR_ISA=avx2", "replay " + trace + " --force none --set runtime.policy=portable");
  ASSERT_EQ(forced_none.exit_code, 1) << forced_none.output;
  EXPECT_TRUE(has(
      forced_none.output,
      "a different kernel ran at dense_1/matmul.fwd: f32_matmul__cpu_blocked_avx2 (recorded" +
          std::string(native == Isa::avx512 ? ", in place of f32_matmul__cpu_blocked_avx512, which cannot "
                                              "run here), "
                                            : "), ") +
          "f32_matmul__cpu_portable (replayed)"))
      << forced_none.output;
  EXPECT_TRUE(has(forced_none.output, "; policy deterministic vs portable")) << forced_none.output;
}

}  // namespace
}  // namespace trainrr::testing
