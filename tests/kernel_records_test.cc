// The GPU kernels CUPTI records, as show --kernels, dump and diff present them. The traces are made with the
// project's own writer: a CPU recording whose steps carry kernel records as the CUDA backend writes them (the
// kernels cuBLASLt chose for each op, each launch's shape and duration, one launched outside every op).

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/test_util.h"
#include "recorder/recorder.h"
#include "tests/trace_rewrite.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const std::string kGemm = "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8_stage3";
const std::string kSplitK = "_ZN8cublasLt19splitKreduce_kernelIffEEvv";

// The kernels of every step, in launch order; cuBLASLt's set-up kernel, outside every op, in step 0 only.
std::vector<trace::KernelLaunch> gpu_kernels(int64_t step) {
  std::vector<trace::KernelLaunch> k = {
      {"dense_1/matmul.fwd", kGemm, 4, 2, 1, 128, 1, 1, 16384, 0, 9000},
      {"dense_1/bias.fwd", "_ZN7trainrr4cuda8bias_addEPfPKfii", 8, 1, 1, 256, 1, 1, 0, 0, 1000},
      {"dense_1/relu.fwd", "_ZN7trainrr4cuda4reluEPfi", 8, 1, 1, 256, 1, 1, 0, 0, 800},
      {"dense_2/matmul.fwd", kGemm, 1, 2, 1, 128, 1, 1, 16384, 0, 3000},
      {"dense_1/matmul.bwd_weight", kGemm, 4, 2, 1, 128, 1, 1, 16384, 0, 12000},
      {"dense_1/matmul.bwd_weight", kSplitK, 2, 1, 1, 32, 1, 1, 0, 512, 500},
  };
  if (step == 0) k.insert(k.begin(), {std::string(trace::kUnattributedSite), "_ZN8cublasLt11init_kernelEv", 1, 1, 1, 32, 1, 1, 0, 0, 200});
  return k;
}

// A CPU recording at `level`, once.
std::string recording(const TempDir& dir, const std::string& level) {
  const std::string path = dir.file("cpu-" + level + ".trr");
  CommandResult r =
      run_trainrr("record " + example("digits_mlp.toml") + " --set train.epochs=1 --level " + level + " -o " + path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return path;
}

// `cpu` rewritten as a GPU run whose steps carry the kernels of gpu_kernels(), changed by `edit`.
std::string with_kernels(const TempDir& dir, const std::string& cpu, const std::string& name, ProbeLevel level,
                         const std::function<void(int64_t, std::vector<trace::KernelLaunch>&)>& edit = {},
                         const std::function<void(trace::TraceStep&)>& edit_step = {}) {
  const std::string out = dir.file(name);
  const std::string err = rewrite_trace(
      cpu, out, [](trace::TraceHeader& h) { h.kernels_recorded = true; },
      [&](trace::TraceStep& s) {
        std::vector<trace::KernelLaunch> k = gpu_kernels(s.index);
        if (edit) edit(s.index, k);
        s.kernels = trace::step_kernels(std::move(k), s.index == 2 ? 3 : 0, level);
        if (edit_step) edit_step(s);
      });
  EXPECT_EQ(err, "");
  return out;
}

size_t line_of(const std::string& text, const std::string& part) {
  const size_t at = text.find(part);
  return at == std::string::npos ? std::string::npos : static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n'));
}

TEST(KernelRecords, ShowKernelsListsEachOpsKernelsSlowestFirst) {
  TempDir dir;
  const std::string gpu = with_kernels(dir, recording(dir, "op"), "gpu.trr", ProbeLevel::op);
  CommandResult r = run_trainrr("show --kernels " + gpu);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 45 steps of 6 kernels, and one in step 0 that no op launched.
  EXPECT_TRUE(has(r.output, gpu + ": 271 GPU kernels in 45 of 45 steps, 1 launched outside every op (listed under "
                                  "(unattributed))"))
      << r.output;
  EXPECT_TRUE(has(r.output, "CUPTI dropped 3 activity records (its buffers were full): those kernels are missing below"))
      << r.output;
  EXPECT_TRUE(has(r.output, "Time(%)       Total (ns)     Count       Avg (ns)     Min (ns)     Max (ns) Grid         "
                            "Block        Op"))
      << r.output;
  // The slowest row first: 45 launches of 12000 ns, 45.6% of 1183700 ns.
  const std::string slowest = "    45.6           540000        45        12000.0        12000        12000 4x2x1        "
                              "128x1x1      dense_1/matmul.bwd_weight " + kGemm;
  EXPECT_TRUE(has(r.output, slowest)) << r.output;
  const size_t first = line_of(r.output, "Time(%)") + 1;
  EXPECT_EQ(line_of(r.output, slowest), first) << r.output;
  EXPECT_EQ(line_of(r.output, "dense_1/matmul.fwd "), first + 1) << r.output;
  EXPECT_EQ(line_of(r.output, "dense_2/matmul.fwd "), first + 2) << r.output;
  EXPECT_EQ(line_of(r.output, "dense_1/bias.fwd "), first + 3) << r.output;
  EXPECT_EQ(line_of(r.output, "dense_1/relu.fwd "), first + 4) << r.output;
  EXPECT_EQ(line_of(r.output, kSplitK), first + 5) << r.output;
  EXPECT_TRUE(has(r.output, "     0.0              200         1          200.0          200          200 1x1x1        "
                            "32x1x1       (unattributed)            _ZN8cublasLt11init_kernelEv"))
      << r.output;

  // show says how many there are, and where to look.
  r = run_trainrr("show " + gpu);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "GPU kernels: 271 in 45 steps, 1 launched outside every op, CUPTI dropped 3 records "
                            "(kernels are missing) (show --kernels lists them)"))
      << r.output;
  r = run_trainrr("show --help");
  EXPECT_TRUE(has(r.output, "--kernels")) << r.output;
}

TEST(KernelRecords, ShowKernelsOnATraceWithoutThemSaysWhy) {
  TempDir dir;
  const std::string cpu = recording(dir, "step");
  CommandResult r = run_trainrr("show --kernels " + cpu);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, cpu + " holds no GPU kernel records: it was not recorded with CUPTI (a run on the CPU, or "
                                  "a trainrr that predates kernel records)"))
      << r.output;
  EXPECT_FALSE(has(run_trainrr("show " + cpu).output, "GPU kernels")) << "a CPU trace has none to mention";

  const std::string refused = dir.file("refused.trr");
  ASSERT_EQ(rewrite_trace(cpu, refused,
                          [](trace::TraceHeader& h) {
                            h.config_overrides.push_back("runtime.device=cuda");
                            h.kernels_not_recorded = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED";
                          }),
            "");
  r = run_trainrr("show --kernels " + refused);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, refused + " holds no GPU kernel records: CUPTI did not record them: "
                                      "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"))
      << r.output;
  r = run_trainrr("show " + refused);
  EXPECT_TRUE(has(r.output, "GPU kernels: not recorded: CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED")) << r.output;
  r = run_trainrr("dump " + refused + " --steps 0");
  EXPECT_TRUE(has(r.output, "gpu_kernels not_recorded reason=CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"))
      << r.output;

  // record --no-kernels: the recording asked for none, which is not CUPTI's doing.
  const std::string unasked = dir.file("unasked.trr");
  ASSERT_EQ(rewrite_trace(cpu, unasked,
                          [](trace::TraceHeader& h) {
                            h.config_overrides.push_back("runtime.device=cuda");
                            h.kernels_not_recorded = std::string(kKernelsNotAsked);
                          }),
            "");
  r = run_trainrr("show --kernels " + unasked);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, unasked + " holds no GPU kernel records: the recording asked for none (trainrr record "
                                      "--no-kernels)"))
      << r.output;
  EXPECT_TRUE(has(run_trainrr("show " + unasked).output,
                  "GPU kernels: not recorded: not asked for (trainrr record --no-kernels)"));

  // Level step keeps counts and digests: show --kernels says so and where the kernels per op are.
  const std::string counted = with_kernels(dir, cpu, "step.trr", ProbeLevel::step);
  r = run_trainrr("show --kernels " + counted);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, ": 271 GPU kernels in 45 of 45 steps, 1 launched outside every op\n"))
      << r.output;
  // No list at level step to find them in.
  EXPECT_FALSE(has(r.output, "listed under")) << r.output;
  EXPECT_FALSE(has(r.output, "missing below")) << r.output;
  EXPECT_TRUE(has(r.output, "recorded at level step: each step keeps its kernel count and the digest of its kernel "
                            "sequence, not the kernels; record at level layer or op for the kernels of each op"))
      << r.output;
  EXPECT_FALSE(has(r.output, "Time(%)")) << r.output;
}

TEST(KernelRecords, DumpPrintsEachStepsKernelsInTextAndJson) {
  TempDir dir;
  const std::string gpu = with_kernels(dir, recording(dir, "op"), "gpu.trr", ProbeLevel::op);
  CommandResult r = run_trainrr("dump " + gpu + " --steps 0:1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "\ngpu_kernels recorded\n")) << r.output.substr(0, 3000);
  const std::string digest = [] {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx",
                  static_cast<unsigned long long>(trace::kernel_sequence_digest(gpu_kernels(0))));
    return std::string(buf);
  }();
  EXPECT_TRUE(has(r.output, "step 0 gpu_kernels count=7 digest=" + digest + " unattributed=1 dropped=0 launches=7"))
      << r.output;
  EXPECT_TRUE(has(r.output, "step 0 gpu_kernel dense_1/matmul.bwd_weight " + kSplitK +
                                " grid(2,1,1) block(32,1,1) shared=0+512 duration_ns=500"))
      << r.output;
  EXPECT_LT(r.output.find("step 0 gpu_kernel (unattributed) _ZN8cublasLt11init_kernelEv"),
            r.output.find("step 0 gpu_kernel dense_1/matmul.fwd " + kGemm))
      << "in launch order: " << r.output;

  r = run_trainrr("dump --json " + gpu + " --steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "\"kernels_recorded\":true,\"kernels_not_recorded\":\"\"")) << r.output.substr(0, 3000);
  EXPECT_TRUE(has(r.output, "{\"type\":\"gpu_kernels\",\"step\":2,\"count\":6,\"digest\":\"")) << r.output;
  EXPECT_TRUE(has(r.output, "\"unattributed\":0,\"dropped\":3,\"launches\":6}")) << r.output;
  EXPECT_TRUE(has(r.output, "{\"type\":\"gpu_kernel\",\"step\":2,\"site\":\"dense_2/matmul.fwd\",\"name\":\"" + kGemm +
                                "\",\"grid\":[1,2,1],\"block\":[128,1,1],\"static_shared_bytes\":16384,"
                                "\"dynamic_shared_bytes\":0,\"duration_ns\":3000}"))
      << r.output;
}

TEST(KernelRecords, DiffNotesOtherKernelsWhereTheValuesMatchAndNamesTheFirstOp) {
  TempDir dir;
  const std::string cpu = recording(dir, "op");
  const std::string a = with_kernels(dir, cpu, "a.trr", ProbeLevel::op);
  // B: from step 3 on, cuBLASLt picks another kernel, in another grid, for the first matmul.
  const std::string b = with_kernels(dir, cpu, "b.trr", ProbeLevel::op, [](int64_t step, auto& k) {
    if (step < 3) return;
    for (auto& l : k)
      if (l.site == "dense_1/matmul.fwd") l.name = "sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32", l.grid_x = 8;
  });
  CommandResult r = run_trainrr("diff " + a + " " + b);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "the GPU kernels differ in 42 of 45 steps compared, first at step 3, op dense_1/matmul.fwd, "
                            "its kernel 1: A ran " + kGemm + " grid(4,2,1) block(128,1,1); B ran "
                            "sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32 grid(8,2,1) block(128,1,1), yet "
                            "every compared value is the same"))
      << r.output;
  EXPECT_TRUE(has(r.output, "identical: the two runs computed the same bits, with other kernels at some sites")) << r.output;
  // The same kernels on both sides: nothing to say. Durations are no part of the sequence.
  const std::string slower = with_kernels(dir, cpu, "slower.trr", ProbeLevel::op, [](int64_t, auto& k) {
    for (auto& l : k) l.duration_ns *= 2;
  });
  r = run_trainrr("diff " + a + " " + slower);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(has(r.output, "GPU kernels")) << r.output;
  EXPECT_TRUE(has(r.output, "identical: the two runs made the same choices and computed the same bits")) << r.output;

  // An op that ran one kernel more, in runs whose values part: still a note, the divergence is the loss's.
  const std::string extra = with_kernels(
      dir, cpu, "extra.trr", ProbeLevel::op,
      [](int64_t step, auto& k) {
        if (step == 5) k.insert(k.begin() + 4, {"dense_2/matmul.fwd", kSplitK, 1, 1, 1, 32, 1, 1, 0, 0, 100});
      },
      [](trace::TraceStep& s) {
        if (s.index == 10 && s.end) s.end->loss += 1;
      });
  r = run_trainrr("diff " + a + " " + extra);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "the GPU kernels differ in 1 of 45 steps compared, first at step 5, op dense_2/matmul.fwd, "
                            "its kernel 2: A ran no kernel 2 there (1 in all); B ran " + kSplitK +
                            " grid(1,1,1) block(32,1,1)\n"))
      << r.output;

  // Kernels on one side only are said once, not compared.
  r = run_trainrr("diff " + a + " " + cpu);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "A holds the GPU kernels CUPTI recorded, B does not: their kernels are not compared"))
      << r.output;
}

TEST(KernelRecords, DiffAtLevelStepNamesTheStepOnly) {
  TempDir dir;
  const std::string cpu = recording(dir, "step");
  const std::string a = with_kernels(dir, cpu, "a.trr", ProbeLevel::step);
  const std::string b = with_kernels(dir, cpu, "b.trr", ProbeLevel::step, [](int64_t step, auto& k) {
    if (step == 7) k.pop_back();
  });
  CommandResult r = run_trainrr("diff " + a + " " + b);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "the GPU kernels differ in 1 of 45 steps compared, first at step 7 ran other GPU kernels "
                            "(6 in A, 5 in B; the digests of their sequences differ); a trace at level step keeps no "
                            "kernels per op, yet every compared value is the same"))
      << r.output;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t occurrences(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// B's output of dense_2/matmul.fwd differs in step 7, where it ran another GEMM kernel, and its ReLU kernel has a
// name that must not reach the page as markup.
std::string diverging_at_step_7(const TempDir& dir, const std::string& cpu, const std::string& name, ProbeLevel level) {
  return with_kernels(
      dir, cpu, name, level,
      [](int64_t step, auto& k) {
        if (step != 7) return;
        k[3].name = "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize128x64x8_stage4";
        k[2].name = "<script>alert(1)</script>";
      },
      [](trace::TraceStep& s) {
        if (s.index != 7) return;
        for (auto& e : s.events)
          if (auto* p = std::get_if<trace::ProbeEvent>(&e); p && p->site == "dense_2/matmul.fwd:out")
            p->fingerprint.digest ^= 1;
      });
}

TEST(KernelRecords, TheHtmlReportDrawsTheKernelsOfTheDivergentStep) {
  TempDir dir;
  const std::string cpu = recording(dir, "op");
  const std::string a = with_kernels(dir, cpu, "a.trr", ProbeLevel::op);
  const std::string b = diverging_at_step_7(dir, cpu, "b.trr", ProbeLevel::op);
  const std::string html = dir.file("diff.html");
  CommandResult r = run_trainrr("diff " + a + " " + b + " --html " + html);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  ASSERT_TRUE(has(r.output, "step 7")) << r.output;
  std::string page = read_text(html);
  ASSERT_TRUE(has(page, "<h2>GPU kernels of step 7</h2>")) << r.output;
  EXPECT_EQ(occurrences(page, "<rect class=\"kb"), 12u);       // 6 kernels in each run
  EXPECT_EQ(occurrences(page, "<rect class=\"kb kat\""), 2u);  // dense_2/matmul.fwd's, in each
  EXPECT_TRUE(has(page, "<code>dense_2/matmul.fwd</code> <span class=\"tag\">first divergence</span>"));
  EXPECT_TRUE(has(page, ">a.trr<title>a.trr</title></text>"));
  EXPECT_TRUE(has(page, ">b.trr<title>b.trr</title></text>"));
  EXPECT_TRUE(has(page, "<title>trainrr::cuda::bias_add(float*, float const*, int, int)\nop: dense_1/bias.fwd\n"));
  EXPECT_TRUE(has(page, "tilesize128x64x8_stage4\nop: dense_2/matmul.fwd\ngrid (1, 2, 1), block (128, 1, 1)\n"));
  EXPECT_TRUE(has(page, "<title>&lt;script&gt;alert(1)&lt;/script&gt;\nop: dense_1/relu.fwd"));
  EXPECT_FALSE(has(page, "<script"));

  // A replay on the CPU has no kernels of its own: the recorded ones are drawn alone.
  const std::string replayed = dir.file("replay.html");
  r = run_trainrr("replay " + b + " --html " + replayed);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  page = read_text(replayed);
  ASSERT_TRUE(has(page, "<h2>GPU kernels of step 7</h2>")) << r.output;
  EXPECT_TRUE(has(page, "The replay ran on the CPU, which launches no GPU kernels: the recorded kernels are drawn "
                        "alone."));
  EXPECT_EQ(occurrences(page, "<rect class=\"kb"), 6u);
  EXPECT_EQ(occurrences(page, "<rect class=\"kb kat\""), 1u);

  // So does bisect, at the step it narrows to.
  const std::string bisected = dir.file("bisect.html");
  r = run_trainrr("bisect " + b + " --html " + bisected);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  page = read_text(bisected);
  EXPECT_TRUE(has(page, "<h2>GPU kernels of step ")) << r.output;
  EXPECT_TRUE(has(page, "The replay ran on the CPU, which launches no GPU kernels"));
  EXPECT_GE(occurrences(page, "<rect class=\"kb"), 6u);

  // Against a trace without kernel records, and at level step: one sentence each, nothing drawn.
  const std::string to_cpu = dir.file("cpu.html");
  r = run_trainrr("diff " + b + " " + cpu + " --html " + to_cpu);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  page = read_text(to_cpu);
  EXPECT_TRUE(has(page, "B (" + cpu + ") holds no GPU kernel records: its side is not drawn.")) << r.output;
  EXPECT_EQ(occurrences(page, "<rect class=\"kb"), 6u);
  const std::string counted = dir.file("step.html");
  const std::string cpu_step = recording(dir, "step");
  r = run_trainrr("diff " + with_kernels(dir, cpu_step, "a-step.trr", ProbeLevel::step) + " " +
                  with_kernels(dir, cpu_step, "b-step.trr", ProbeLevel::step, {}, [](trace::TraceStep& s) {
                    if (s.index == 7 && s.end) s.end->loss += 1;
                  }) +
                  " --html " + counted);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  page = read_text(counted);
  EXPECT_TRUE(has(page, "a-step.trr ran 6 and b-step.trr 6 GPU kernels in step 7, but both traces were recorded at "
                        "level step"))
      << r.output;
  EXPECT_FALSE(has(page, "<rect class=\"kb"));
}

}  // namespace
}  // namespace trainrr::testing
