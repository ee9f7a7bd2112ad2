// A run recorded on the GPU, met on a machine without one: what train, record and replay say, and what a
// replay on the CPU (--set runtime.device=cpu) reports. The GPU trace is made with the project's own writer:
// a CPU recording whose header says runtime.device = "cuda", with a GPU's environment, and whose matmul
// choices are cuBLASLt algorithms, as the CUDA backend records them.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_openblas.h"
#include "replayer/replay_hooks.h"
#include "tests/test_util.h"
#include "tests/trace_rewrite.h"
#include "traces/trace_reader.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// What this machine can say about a GPU: the backend's probe, or that the build has none.
bool says_why_no_gpu(const std::string& out) {
  return has(out, "no CUDA driver on this machine") || has(out, "built without the CUDA backend") ||
         has(out, "cudaGetDeviceCount failed") || has(out, "sees no GPU");
}

// A command that ran: this machine has a GPU and the CUDA backend (the tests below are about one without).
bool gpu_here(const CommandResult& r) { return r.exit_code == 0; }

TEST(GpuDevice, TrainAndRecordOnTheGpuWithoutOneExit3AndWriteNothing) {
  TempDir dir;
  const std::string trace = dir.file("gpu.trr");
  CommandResult r = run_trainrr("record " + example("digits_mlp.toml") + " --set runtime.device=cuda -o " + trace);
  if (gpu_here(r)) GTEST_SKIP() << "this machine has a GPU: " << r.output;
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(has(r.output, "runtime.device = \"cuda\": ")) << r.output;
  EXPECT_TRUE(says_why_no_gpu(r.output)) << r.output;
  EXPECT_FALSE(std::filesystem::exists(trace));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  r = run_trainrr("train " + example("digits_mlp.toml") + " --set runtime.device=cuda:2");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(has(r.output, "runtime.device = \"cuda:2\": ")) << r.output;
  // A device that is no device is a mistake in the configuration: exit 2, naming the key.
  r = run_trainrr("train " + example("digits_mlp.toml") + " --set runtime.device=gpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(has(r.output, "runtime.device: unknown device \"gpu\": expected cpu, cuda or cuda:N")) << r.output;
}

// Sets (or adds) one entry of a trace's environment.
void set_environment(trace::TraceHeader& h, const std::string& key, const std::string& value) {
  for (auto& [k, v] : h.environment)
    if (k == key) {
      v = value;
      return;
    }
  h.environment.emplace_back(key, value);
}

// A CPU recording rewritten as the CUDA backend writes a GPU run: its matmul sites chose cuBLASLt algorithms.
std::string gpu_trace(const TempDir& dir, const std::string& cpu_trace) {
  const std::string out = dir.file("gpu.trr");
  BlasLtAlgo first;
  first.id = 21, first.tile = 18, first.stages = 20, first.waves = 0.5f;
  first.data = {21, 18, 20, 0, 0, 0, 0, 7};
  BlasLtAlgo split = first;
  split.split_k = 4, split.reduction = 1, split.workspace = 65536;
  split.data[3] = 4;
  const std::string err = rewrite_trace(
      cpu_trace, out,
      [](trace::TraceHeader& h) {
        h.config_overrides.push_back("runtime.device=cuda");
        set_environment(h, "device", "cuda:0");
        set_environment(h, "cuda.backend", "built");
        h.environment.emplace_back("gpu.name", "NVIDIA H200");
        h.environment.emplace_back("gpu.compute_capability", "9.0");
        h.environment.emplace_back("gpu.sm_count", "132");
        h.environment.emplace_back("cuda.driver", "13.0");
        h.environment.emplace_back("cuda.runtime", "13.0");
        h.environment.emplace_back("lib.cublasLt", "130100");
      },
      [&](trace::TraceStep& s) {
        for (auto& e : s.events) {
          auto* k = std::get_if<KernelChoice>(&e);
          if (!k || k->op != "matmul") continue;
          k->blaslt = {first, split};
          k->candidates = {blaslt_kernel_id(first), blaslt_kernel_id(split)};
          k->chosen = k->candidates[0];
          k->reason = "default: cuBLASLt's heuristic's first";
          k->timings_us.clear();
          k->blaslt_version = 130100;
        }
      });
  EXPECT_EQ(err, "");
  return out;
}

TEST(GpuTrace, ReplayWithoutAGpuExits3AndSaysHowToReplayOnTheCpu) {
  TempDir dir;
  const std::string cpu = dir.file("cpu.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_mlp.toml") + " --set train.epochs=1 -o " + cpu).exit_code, 0);
  const std::string gpu = gpu_trace(dir, cpu);
  CommandResult r = run_trainrr("replay " + gpu);
  if (gpu_here(r)) GTEST_SKIP() << "this machine has a GPU: " << r.output;
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(has(r.output, "this run is set to run on the GPU (runtime.device = \"cuda\")")) << r.output;
  EXPECT_TRUE(says_why_no_gpu(r.output)) << r.output;
  EXPECT_TRUE(has(r.output, "--set runtime.device=cpu")) << r.output;
  r = run_trainrr("bisect " + gpu);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(has(r.output, "--set runtime.device=cpu")) << r.output;
  // A CPU recording replayed with the GPU asked for: the --set is what asks for it, and dropping it is the
  // advice.
  for (const std::string command : {"replay ", "bisect "}) {
    r = run_trainrr(command + cpu + " --set runtime.device=cuda");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_TRUE(has(r.output, "--set runtime.device=cuda asks for the GPU, which cannot run here: "))
        << r.output;
    EXPECT_TRUE(says_why_no_gpu(r.output)) << r.output;
    EXPECT_TRUE(
        has(r.output, "The run was recorded with runtime.device = \"cpu\": replay it without that --set"))
        << r.output;
    EXPECT_FALSE(has(r.output, "To replay it on the CPU")) << r.output;
  }

  // show and dump say what the GPU chose.
  r = run_trainrr("show " + gpu);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output,
                  "\n  device: cuda:0 (NVIDIA H200, compute capability 9.0, 132 SMs; CUDA driver 13.0, "
                  "runtime 13.0)\n"))
      << r.output;
  EXPECT_FALSE(has(r.output, "not built")) << r.output;
  EXPECT_TRUE(has(r.output, "GPU kernel choices: 5 sites")) << r.output;
  EXPECT_TRUE(has(r.output, "dense_1/matmul.fwd -> f32_matmul__cublaslt_algo21_tile18_stages20 (default: cuBLASLt's "
                            "heuristic's first): cuBLASLt algorithm 21, tile 18, stages 20, not split over K "
                            "(cuBLASLt 130100, 2 candidates)"))
      << r.output;
  r = run_trainrr("dump --json " + gpu);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(has(r.output, "\"blaslt_version\":130100")) << r.output.substr(0, 4000);
  EXPECT_TRUE(has(r.output, "\"split_k\":4,\"reduction_scheme\":1")) << r.output.substr(0, 4000);
}

TEST(GpuTrace, ReplayOnTheCpuNamesTheFirstOpWithTheKernelOnEachSide) {
  // The "GPU" run's values come from the generic kernel, which rounds each multiply and add; this machine's
  // own choice (AVX2 or AVX-512, fused) gives other bits at the first matmul.
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU runs the generic kernels only";
  TempDir dir;
  const std::string cpu = dir.file("cpu.trr");
  ASSERT_EQ(run_trainrr_env("TRAINRR_ISA=generic", "record " + example("digits_mlp.toml") +
                                                       " --set train.epochs=1 --level op -o " + cpu)
                .exit_code,
            0);
  const std::string gpu = gpu_trace(dir, cpu);
  CommandResult r = run_trainrr("replay " + gpu + " --set runtime.device=cpu");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "dense_1/matmul.fwd")) << r.output;
  EXPECT_TRUE(has(r.output, "f32_matmul__cublaslt_algo21_tile18_stages20")) << r.output;
  EXPECT_TRUE(has(r.output, "f32_matmul__cpu_blocked_" + std::string(isa_name(detect_isa())))) << r.output;
  // What the GPU ran there, in cuBLASLt's terms.
  EXPECT_TRUE(has(r.output, "recorded ran cuBLASLt algorithm 21, tile 18, stages 20, not split over K")) << r.output;
  // The recorded side cannot be re-executed here (its kernels ran on the GPU, and this machine has none) and the
  // trace keeps digests and summaries, not values: the report says so, and where the element can be had,
  // rather than give element values of this machine's kernels.
  EXPECT_TRUE(has(r.output, "recorded: sum ")) << r.output;
  // Why it cannot: no driver, or (a build without CUDA) no backend.
  EXPECT_TRUE(has(r.output, "no element detail: only the recorded device (runtime.device = \"cuda\") gives the "
                            "recorded values, and this machine cannot run it: "))
      << r.output;
  EXPECT_TRUE(has(r.output, "The trace keeps digests, not values")) << r.output;
  EXPECT_TRUE(has(r.output, "on a machine with that GPU")) << r.output;
  EXPECT_FALSE(has(r.output, "ulp")) << r.output;
  // The device changed, and the GPU is a difference of the environment.
  EXPECT_TRUE(has(r.output, "recorded with runtime.device = \"cuda\", replayed with runtime.device = \"cpu\"")) << r.output;
  EXPECT_TRUE(has(r.output, "\n  device: cuda:0 (recorded) vs cpu (replayed)\n")) << r.output;
  EXPECT_TRUE(has(r.output, "\n  gpu.name: NVIDIA H200 (recorded) vs (not on a GPU) (replayed)\n"))
      << r.output;
  // Whether this trainrr has the CUDA backend changes nothing the CPU computes: no difference.
  EXPECT_FALSE(has(r.output, "cuda.backend")) << r.output;
}

// A trace says on which device its run ran and whether the trainrr that recorded it had the CUDA backend;
// the backend alone is no difference between two runs on the CPU (a CPU-only build replaying a trace of a
// build with the backend), nor is the entry that traces written before these said the same in every build.
TEST(GpuTrace, ATraceSaysItsDeviceAndTheCudaBackendOfItsBuildIsNoDifference) {
  TempDir dir;
  const std::string cpu = dir.file("cpu.trr");
  ASSERT_EQ(
      run_trainrr("record " + example("breast_cancer.toml") + " --set train.epochs=1 -o " + cpu).exit_code,
      0);
#if TRAINRR_WITH_CUDA
  const std::string built = "built", other = "not built";
#else
  const std::string built = "not built", other = "built";
#endif
  CommandResult r = run_trainrr("show " + cpu);
  EXPECT_TRUE(has(r.output, "\n  device: cpu; CUDA backend: " + built + "\n")) << r.output;
  EXPECT_FALSE(has(r.output, "CPU backend only")) << r.output;
  r = run_trainrr("dump --json --steps :1 " + cpu);
  EXPECT_TRUE(has(r.output, "\"device\":\"cpu\",")) << r.output.substr(0, 3000);
  EXPECT_TRUE(has(r.output, "\"cuda.backend\":\"" + built + "\"")) << r.output.substr(0, 3000);

  const std::string other_build = dir.file("other_build.trr");
  ASSERT_EQ(rewrite_trace(cpu, other_build,
                          [&](trace::TraceHeader& h) { set_environment(h, "cuda.backend", other); }),
            "");
  // As an older trainrr wrote it: no device, and "cuda" saying "not built" whatever the build.
  const std::string older = dir.file("older.trr");
  ASSERT_EQ(rewrite_trace(cpu, older,
                          [](trace::TraceHeader& h) {
                            std::erase_if(h.environment, [](const auto& e) {
                              return e.first == "device" || e.first == "cuda.backend";
                            });
                            h.environment.emplace_back("cuda", "not built: CPU backend only");
                          }),
            "");
  for (const std::string& trace : {other_build, older}) {
    for (const std::string& command : {"replay --json " + trace, "diff --json " + cpu + " " + trace}) {
      r = run_trainrr(command);
      EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.output;
      EXPECT_TRUE(has(r.output, "\"environment_differences\":[]")) << command << "\n" << r.output;
    }
  }
  r = run_trainrr("show " + older);
  EXPECT_FALSE(has(r.output, "CPU backend only")) << r.output;
  EXPECT_FALSE(has(r.output, "device:")) << r.output;
}

// A CPU recording's OpenBLAS code is served back to its replay (the process restarts with OPENBLAS_CORETYPE);
// a GPU recording's matmuls ran in cuBLASLt, so its replay on the CPU runs this CPU's own OpenBLAS code.
TEST(GpuTrace, AReplayOnTheCpuOfAGpuRecordingKeepsThisCpusOpenblasCode) {
  if (!openblas_core_runs_on("Prescott", cpu_flags(), detect_isa()))
    GTEST_SKIP() << "OpenBLAS's Prescott code does not run here";
  TempDir dir;
  const std::string cpu = dir.file("cpu.trr");
  CommandResult r = run_trainrr_env("OPENBLAS_CORETYPE=Prescott", "record " + example("breast_cancer.toml") +
                                                                      " --set train.epochs=1 -o " + cpu);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_trainrr_env("env -u OPENBLAS_CORETYPE", "replay " + cpu);
  if (!has(r.output, "restarted with OPENBLAS_CORETYPE=Prescott"))
    GTEST_SKIP() << "OpenBLAS picks its Prescott code on this CPU by itself: " << r.output;
  r = run_trainrr_env("env -u OPENBLAS_CORETYPE",
                      "replay " + gpu_trace(dir, cpu) + " --set runtime.device=cpu");
  EXPECT_NE(r.exit_code, 2) << r.output;
  EXPECT_FALSE(has(r.output, "restarted with OPENBLAS_CORETYPE")) << r.output;
  EXPECT_FALSE(has(r.output, "Prescott code")) << r.output;
}

// A forced replay on a GPU: the device gets the recorded cuBLASLt algorithms from the trace, whether or not this
// machine's heuristic offered them, and when it cannot restore one (another GPU or cuBLASLt) what it ran instead
// is a kernel difference with its reason, not a silent swap.
TEST(GpuTrace, AForcedReplayOnAGpuGetsTheRecordedAlgorithmsAndHearsWhenOneCannotRun) {
  TempDir dir;
  const std::string cpu = dir.file("cpu.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_mlp.toml") + " --set train.epochs=1 -o " + cpu).exit_code, 0);
  const std::string gpu = gpu_trace(dir, cpu);
  auto reader = trace::TraceReader::open(gpu);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  ReplayHooks hooks(**reader, ForceSet::all(), ProbeLevel::step);
  ASSERT_FALSE(hooks.at_end());

  // This GPU's heuristic offers another algorithm than the two recorded.
  BlasLtAlgo other;
  other.id = 6, other.tile = 3, other.stages = 9;
  KernelChoice choice;
  choice.site = "dense_1/matmul.fwd";
  choice.op = "matmul";
  choice.blaslt = {other};
  choice.candidates = {blaslt_kernel_id(other)};
  choice.chosen = choice.candidates[0];
  choice.blaslt_version = 130200;
  hooks.kernel_selected(choice);
  EXPECT_EQ(choice.chosen, "f32_matmul__cublaslt_algo21_tile18_stages20");
  ASSERT_EQ(choice.blaslt.size(), 2u);
  EXPECT_EQ(choice.blaslt[0].id, 21);
  EXPECT_EQ(choice.blaslt_version, 130100u);
  EXPECT_TRUE(hooks.kernel_differences().empty());

  hooks.kernel_replaced("dense_1/matmul.fwd", blaslt_kernel_id(other), "recorded with cuBLASLt 130100, this is 130200");
  ASSERT_EQ(hooks.kernel_differences().count("dense_1/matmul.fwd"), 1u);
  EXPECT_EQ(hooks.kernel_differences().at("dense_1/matmul.fwd"),
            std::make_pair(std::string("f32_matmul__cublaslt_algo21_tile18_stages20"), blaslt_kernel_id(other)));
  ASSERT_EQ(hooks.substituted().size(), 1u);
  EXPECT_EQ(hooks.substituted()[0].why, "recorded with cuBLASLt 130100, this is 130200");

  // A replay of the same trace on the CPU is not handed the algorithms: its candidates are the CPU's kernels.
  KernelChoice on_cpu;
  on_cpu.site = "dense_1/matmul.bwd_weight";
  on_cpu.op = "matmul";
  on_cpu.candidates = {"f32_matmul__cpu_blocked_generic"};
  on_cpu.chosen = on_cpu.candidates[0];
  hooks.kernel_selected(on_cpu);
  EXPECT_TRUE(on_cpu.blaslt.empty());
  EXPECT_EQ(on_cpu.chosen, "f32_matmul__cpu_blocked_generic");
}

}  // namespace
}  // namespace trainrr::testing
