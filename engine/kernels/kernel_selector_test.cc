// Selection: the default rule, the deterministic policy's promise, forcing and autotune, as the hooks see them.

#include "engine/kernels/kernel_selector.h"

#include <gtest/gtest.h>

#include "engine/kernels/kernel_test_util.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/thread_pool.h"

namespace trainrr {
namespace {

class RecordingHooks : public Hooks {
 public:
  std::vector<KernelChoice> choices;
  std::string force;  // replaces the engine's choice when set
  void kernel_selected(KernelChoice& choice) override {
    if (!force.empty()) choice.chosen = force;
    choices.push_back(choice);
  }
};

struct Fixture {
  KernelRegistry registry;
  ThreadPool pool;
  RecordingHooks hooks;
  KernelSelector selector;
  Fixture(Policy policy, int threads, Isa isa = detect_isa())
      : pool(threads), selector((register_cpu_kernels(registry), registry), policy, isa, pool, hooks) {}
};

WorkShape matmul_shape(int64_t m, int64_t n, int64_t k) { return {double(m) * n * k, m, n, k}; }
WorkShape reduce_shape(int64_t rows, int64_t cols) { return {double(rows) * cols, rows, cols, 0}; }

TEST(KernelSelector, DeterministicPolicyPicksOnlyDeterministicThreadIndependentKernels) {
  const WorkShape shapes[] = {matmul_shape(8, 8, 65536), matmul_shape(128, 512, 784), reduce_shape(1 << 20, 1),
                              reduce_shape(64, 512), reduce_shape(100, 1), {1e9, 0, 0, 0}};
  const OpKind ops[] = {OpKind::matmul, OpKind::reduce, OpKind::conv2d_fwd, OpKind::conv2d_bwd_data,
                        OpKind::conv2d_bwd_filter, OpKind::loader};
  for (int threads : {1, 2}) {
    Fixture f(Policy::deterministic, threads);
    int site = 0;
    for (OpKind op : ops)
      for (const WorkShape& s : shapes) {
        const Kernel& k = f.selector.select("site" + std::to_string(site++), op, s);
        EXPECT_TRUE(k.info.deterministic && !k.info.thread_dependent) << k.info.id;
        EXPECT_TRUE(f.hooks.choices.back().reason.starts_with("deterministic: ")) << f.hooks.choices.back().reason;
      }
  }
}

// Determinism costs nothing where the default rule's choice is deterministic already.
TEST(KernelSelector, DeterministicPolicyMakesTheDefaultChoiceWhenThatIsDeterministic) {
  Fixture fast(Policy::fast, 2), det(Policy::deterministic, 2);
  struct Op {
    OpKind op;
    WorkShape shape;
  } ops[] = {{OpKind::matmul, matmul_shape(128, 512, 784)}, {OpKind::matmul, matmul_shape(784, 512, 128)},
             {OpKind::reduce, reduce_shape(32, 512)},       {OpKind::reduce, reduce_shape(1000, 1)},
             {OpKind::conv2d_fwd, {1e7, 0, 0, 0}},           {OpKind::conv2d_bwd_filter, {1e7, 0, 0, 0}}};
  for (const Op& o : ops) {
    const Kernel& a = fast.selector.select("s", o.op, o.shape);
    const Kernel& b = det.selector.select("s", o.op, o.shape);
    ASSERT_TRUE(a.info.deterministic && !a.info.thread_dependent) << a.info.id;
    EXPECT_EQ(a.info.id, b.info.id);
    fast.selector.reset();
    det.selector.reset();
  }
}

TEST(KernelSelector, DefaultRuleGamblesOnlyWithSeveralThreads) {
  Fixture two(Policy::fast, 2), one(Policy::fast, 1);
  EXPECT_TRUE(two.selector.select("mm", OpKind::matmul, matmul_shape(8, 8, 4096)).info.id.starts_with(
      "f32_matmul__cpu_splitk_threads"));
  EXPECT_EQ(two.hooks.choices.back().reason, "default: k=4096 > 8*m*n=512, 2 threads");
  EXPECT_TRUE(one.selector.select("mm", OpKind::matmul, matmul_shape(8, 8, 4096)).info.id.starts_with(
      "f32_matmul__cpu_blocked"));
  EXPECT_EQ(two.selector.select("sum", OpKind::reduce, reduce_shape(1 << 20, 1)).info.id,
            "f32_sum__cpu_atomic_threads");
  EXPECT_EQ(one.selector.select("sum", OpKind::reduce, reduce_shape(1 << 20, 1)).info.id,
            "f32_sum__cpu_chunked_threads");
  EXPECT_EQ(two.selector.select("data/loader", OpKind::loader, 0).info.id, "loader__first_ready");
  EXPECT_EQ(one.selector.select("data/loader", OpKind::loader, 0).info.id, "loader__ordered");
}

TEST(KernelSelector, DefaultRuleTakesTheBestInstructionSetTheRunAllows) {
  Fixture generic(Policy::fast, 1, Isa::generic);
  EXPECT_EQ(generic.selector.select("mm", OpKind::matmul, matmul_shape(64, 64, 64)).info.id,
            "f32_matmul__cpu_blocked_generic");
  EXPECT_EQ(generic.selector.select("conv", OpKind::conv2d_fwd, 1e6).info.id, "f32_conv2d_fwd__cpu_im2col_generic");
  if (detect_isa() < Isa::avx2) GTEST_SKIP() << "this CPU lacks AVX2";
  Fixture avx2(Policy::fast, 1, Isa::avx2);
  EXPECT_EQ(avx2.selector.select("mm", OpKind::matmul, matmul_shape(64, 64, 64)).info.id,
            "f32_matmul__cpu_blocked_avx2");
  EXPECT_EQ(avx2.selector.select("conv", OpKind::conv2d_fwd, 1e6).info.id, "f32_conv2d_fwd__cpu_im2col_avx2");
}

TEST(KernelSelector, ForcedUnknownIdThrowsKernelUnavailableNamingIt) {
  Fixture f(Policy::forced, 1);
  f.hooks.force = "f32_matmul__tpu_systolic";
  try {
    (void)f.selector.select("dense_1/matmul.fwd", OpKind::matmul, matmul_shape(4, 4, 4));
    FAIL() << "no exception";
  } catch (const KernelUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("f32_matmul__tpu_systolic"), std::string::npos) << e.what();
  }
}

TEST(KernelSelector, ForcedKnownIdIsUsedWhateverTheRule) {
  Fixture f(Policy::forced, 2);
  f.hooks.force = "f32_matmul__cpu_reference";
  EXPECT_EQ(f.selector.select("mm", OpKind::matmul, matmul_shape(512, 512, 512)).info.id, "f32_matmul__cpu_reference");
  EXPECT_EQ(f.hooks.choices.back().reason, "forced");
}

// A site autotune times nothing at (the loader) takes the default policy's rule, and its reason says so, not
// that the default policy ran.
TEST(KernelSelector, AutotuneSaysWhereItTimesNothingAndTakesTheDefaultRule) {
  Fixture f(Policy::autotune, 2);
  f.selector.select("data/loader", OpKind::loader, 100.0);
  ASSERT_EQ(f.hooks.choices.size(), 1u);
  EXPECT_EQ(f.hooks.choices[0].reason, "default (autotune times no candidates here): first ready, 2 threads");
  EXPECT_TRUE(f.hooks.choices[0].timings_us.empty());
}

TEST(KernelSelector, AutotuneTimesEveryCandidateAndKeepsOneOfThem) {
  Fixture f(Policy::autotune, 2);
  const testing::MatmulProblem p({40, 50, 60}, 9);
  std::vector<float> c = p.c0;
  run_matmul(f.selector, "dense_1/matmul.fwd", p.args(c.data()));
  ASSERT_EQ(f.hooks.choices.size(), 1u);
  const KernelChoice& choice = f.hooks.choices[0];
  EXPECT_TRUE(choice.reason.starts_with("autotune")) << choice.reason;
  ASSERT_EQ(choice.timings_us.size(), choice.candidates.size());
  EXPECT_GE(choice.candidates.size(), 4u);
  for (double us : choice.timings_us) EXPECT_GT(us, 0);
  EXPECT_NE(std::find(choice.candidates.begin(), choice.candidates.end(), choice.chosen), choice.candidates.end());
  // The choice is kept for the site: a second call neither re-times nor reports again.
  run_matmul(f.selector, "dense_1/matmul.fwd", p.args(c.data()));
  EXPECT_EQ(f.hooks.choices.size(), 1u);
}

TEST(KernelSelector, OpenBlasChoiceRecordsVersionCoreAndThreads) {
  KernelRegistry full, only_openblas;
  register_cpu_kernels(full);
  only_openblas.add(*full.find("f32_matmul__openblas_sgemm"));
  ThreadPool pool(2);
  RecordingHooks hooks;
  KernelSelector selector(only_openblas, Policy::fast, detect_isa(), pool, hooks);
  EXPECT_EQ(selector.select("mm", OpKind::matmul, matmul_shape(64, 64, 64)).info.id, "f32_matmul__openblas_sgemm");
  const std::string& reason = hooks.choices.back().reason;
  EXPECT_NE(reason.find("(OpenBLAS "), std::string::npos) << reason;
  EXPECT_NE(reason.find(" core="), std::string::npos) << reason;
  EXPECT_NE(reason.find(" threads=2)"), std::string::npos) << reason;
  EXPECT_NE(reason.find(" core=" + openblas_core() + " "), std::string::npos) << reason;
}

TEST(OpenBlasCore, IsReadFromADescription) {
  EXPECT_EQ(openblas_core_in("OpenBLAS 0.3.21 core=Cooperlake threads=2"), "Cooperlake");
  EXPECT_EQ(openblas_core_in("OpenBLAS 0.3.21 core=Haswell"), "Haswell");
  EXPECT_EQ(openblas_core_in("OpenBLAS 0.3.21"), "");
  EXPECT_EQ(openblas_core_in(""), "");
  EXPECT_EQ(openblas_core_in(openblas_description()), openblas_core());
}

TEST(OpenBlasCore, RunsOnlyWhereItsInstructionSetsAre) {
  const std::vector<std::string> sse = {"sse2", "pni", "ssse3", "sse4_1", "sse4_2"};
  std::vector<std::string> avx2 = sse;
  for (const char* f : {"avx", "avx2", "fma"}) avx2.push_back(f);
  std::vector<std::string> avx512 = avx2;
  for (const char* f : {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}) avx512.push_back(f);
  std::vector<std::string> bf16 = avx512;
  bf16.push_back("avx512_bf16");

  EXPECT_TRUE(openblas_core_runs_on("Prescott", sse, Isa::generic));
  EXPECT_TRUE(openblas_core_runs_on("Nehalem", sse, Isa::generic));
  EXPECT_FALSE(openblas_core_runs_on("Haswell", sse, Isa::generic));
  EXPECT_TRUE(openblas_core_runs_on("Haswell", avx2, Isa::avx2));
  EXPECT_FALSE(openblas_core_runs_on("SkylakeX", avx2, Isa::avx2));
  EXPECT_TRUE(openblas_core_runs_on("SkylakeX", avx512, Isa::avx512));
  EXPECT_FALSE(openblas_core_runs_on("Cooperlake", avx512, Isa::avx512));  // no bf16
  EXPECT_TRUE(openblas_core_runs_on("Cooperlake", bf16, Isa::avx512));
  EXPECT_FALSE(openblas_core_runs_on("SapphireRapids", bf16, Isa::avx512));  // no AMX
  // TRAINRR_ISA lowers what may run, whatever the CPU has.
  EXPECT_FALSE(openblas_core_runs_on("SkylakeX", bf16, Isa::avx2));
  EXPECT_FALSE(openblas_core_runs_on("Haswell", bf16, Isa::generic));
  // A core this check does not know is never taken to run, and is said to be unknown.
  EXPECT_FALSE(openblas_core_runs_on("Bulldozer", bf16, Isa::avx512));
  EXPECT_FALSE(openblas_core_runs_on("", bf16, Isa::avx512));
  EXPECT_FALSE(openblas_core_known("Bulldozer"));
  EXPECT_FALSE(openblas_core_known("Barcelona"));
  EXPECT_TRUE(openblas_core_known("Atom"));
  EXPECT_TRUE(openblas_core_runs_on("Atom", sse, Isa::generic));
  // Names compare without case, as OPENBLAS_CORETYPE takes them.
  EXPECT_TRUE(openblas_same_core("haswell", "Haswell"));
  EXPECT_FALSE(openblas_same_core("Haswell", "SkylakeX"));
  EXPECT_TRUE(openblas_core_runs_on("haswell", avx2, Isa::avx2));
}

TEST(OpenBlasCore, AFallbackBelowTheCpusInstructionSetIsNamedWithTheCodeItCouldRun) {
  std::vector<std::string> avx2 = {"sse2", "pni", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma"};
  std::vector<std::string> avx512 = avx2;
  for (const char* f : {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}) avx512.push_back(f);
  std::vector<std::string> bf16 = avx512;
  bf16.push_back("avx512_bf16");
  // An OpenBLAS that does not know the CPU runs its Prescott code on an AVX-512 CPU.
  EXPECT_EQ(openblas_better_core("Prescott", bf16, Isa::avx512), "Cooperlake");
  EXPECT_EQ(openblas_better_core("Prescott", avx512, Isa::avx512), "SkylakeX");
  EXPECT_EQ(openblas_better_core("Sandybridge", avx2, Isa::avx2), "Haswell");
  // Its own code for the CPU, or code it does not describe, is left alone.
  EXPECT_EQ(openblas_better_core("Cooperlake", bf16, Isa::avx512), "");
  EXPECT_EQ(openblas_better_core("Zen", avx2, Isa::avx2), "");
  EXPECT_EQ(openblas_better_core("Haswell", avx2, Isa::avx2), "");
  EXPECT_EQ(openblas_better_core("Prescott", avx2, Isa::generic), "");
  EXPECT_EQ(openblas_better_core("Bulldozer", bf16, Isa::avx512), "");
}

TEST(OpenBlasCore, TheCoreThisProcessRunsPassesTheCheck) {
  const std::string core = openblas_core();
  ASSERT_FALSE(core.empty());
  const std::vector<std::string> checked = {"Prescott", "Core2",       "Penryn",        "Dunnington",
                                            "Nehalem",  "Sandybridge", "Haswell",       "Zen",
                                            "SkylakeX", "Cooperlake",  "SapphireRapids"};
#if !defined(__x86_64__)
  GTEST_SKIP() << "OpenBLAS's cores are checked on x86-64 only";
#endif
  if (std::find(checked.begin(), checked.end(), core) == checked.end())
    GTEST_SKIP() << "OpenBLAS runs its " << core << " code here, which the check does not know";
  EXPECT_TRUE(openblas_core_runs_on(core, cpu_flags(), detect_isa())) << core;
}


TEST(KernelSelector, PortablePolicyPicksOnlyPortableKernelsAndThePortableProductsForMatmulAndConv) {
  const WorkShape shapes[] = {matmul_shape(8, 8, 65536), matmul_shape(128, 512, 784), reduce_shape(1 << 20, 1),
                              reduce_shape(64, 512), reduce_shape(100, 1), {1e9, 0, 0, 0}};
  const OpKind ops[] = {OpKind::matmul, OpKind::reduce, OpKind::conv2d_fwd, OpKind::conv2d_bwd_data,
                        OpKind::conv2d_bwd_filter, OpKind::loader};
  for (int threads : {1, 2}) {
    Fixture f(Policy::portable, threads);
    int site = 0;
    for (OpKind op : ops)
      for (const WorkShape& s : shapes) {
        const Kernel& k = f.selector.select("site" + std::to_string(site++), op, s);
        EXPECT_TRUE(k.info.portable && k.info.deterministic && !k.info.thread_dependent) << k.info.id;
        EXPECT_TRUE(f.hooks.choices.back().reason.starts_with("portable: ")) << f.hooks.choices.back().reason;
        for (const std::string& id : f.hooks.choices.back().candidates) {
          EXPECT_EQ(id.find("openblas"), std::string::npos) << id;
          EXPECT_EQ(id.find("avx"), std::string::npos) << id;
        }
        if (op == OpKind::matmul || op == OpKind::conv2d_fwd || op == OpKind::conv2d_bwd_data ||
            op == OpKind::conv2d_bwd_filter) {
          EXPECT_TRUE(k.info.id.ends_with("__cpu_portable")) << k.info.id;
        }
      }
  }
}

TEST(KernelSelector, PortableIsAPolicyName) {
  ASSERT_TRUE(parse_policy("portable"));
  EXPECT_EQ(parse_policy("portable").value(), Policy::portable);
  EXPECT_STREQ(policy_name(Policy::portable), "portable");
  EXPECT_TRUE(parse_policy("portabel").error().message.find("portable") != std::string::npos);
}

}  // namespace
}  // namespace trainrr
