// The CUDA device's conv sites on the host: their candidates (cuDNN's engines, then the im2col + cuBLASLt
// variant), each policy's pick over the combined list, forced ids, and how a choice's cuDNN and cuBLASLt records
// are read and checked.

#include "engine/kernels/conv_sites.h"

#include <gtest/gtest.h>

#include <limits>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/cudnn_choice.h"

namespace trainrr {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

CudnnEngine engine(int64_t index, std::vector<int32_t> notes = {}, std::vector<CudnnKnob> knobs = {}) {
  CudnnEngine e;
  e.global_index = index;
  e.numerical_notes = std::move(notes);
  e.knobs = std::move(knobs);
  return e;
}

BlasLtAlgo algo(int32_t id, int32_t split_k = 1, uint32_t reduction = 0) {
  BlasLtAlgo a;
  a.id = id, a.tile = 18, a.stages = 20, a.split_k = split_k, a.reduction = reduction;
  a.data = {static_cast<uint64_t>(id), 18, 20, static_cast<uint64_t>(split_k), reduction, 0, 0, 0};
  return a;
}

const CudnnEngine kNondet = engine(3, {kCudnnNoteNondeterministic});
const CudnnEngine kPlain = engine(34, {kCudnnNoteTensorCore}, {{2, 3}});

ConvIm2col im2col_ok(bool deterministic = true) {
  ConvIm2col c;
  c.runs = true;
  c.deterministic = deterministic;
  if (!deterministic) c.why_not = "its cuBLASLt algorithm is split over K";
  return c;
}

TEST(ConvSites, OpNamesAndTheIm2colIds) {
  EXPECT_EQ(conv_op_from_name("conv2d_fwd"), OpKind::conv2d_fwd);
  EXPECT_EQ(conv_op_from_name("conv2d_bwd_data"), OpKind::conv2d_bwd_data);
  EXPECT_EQ(conv_op_from_name("conv2d_bwd_filter"), OpKind::conv2d_bwd_filter);
  EXPECT_FALSE(conv_op_from_name("matmul"));
  EXPECT_EQ(conv_im2col_id(OpKind::conv2d_fwd), "f32_conv2d_fwd__cuda_im2col_cublaslt");
  EXPECT_EQ(conv_im2col_id(OpKind::conv2d_bwd_data), "f32_conv2d_bwd_data__cuda_im2col_cublaslt");
  EXPECT_EQ(conv_im2col_id(OpKind::conv2d_bwd_filter), "f32_conv2d_bwd_filter__cuda_im2col_cublaslt");
  EXPECT_TRUE(is_conv_im2col_id("f32_conv2d_bwd_filter__cuda_im2col_cublaslt"));
  EXPECT_FALSE(is_conv_im2col_id("f32_conv2d_fwd__cudnn_engine3"));
  EXPECT_FALSE(is_conv_im2col_id(blaslt_kernel_id(algo(21))));
}

TEST(ConvSites, CandidatesAreCudnnsEnginesThenTheIm2colVariant) {
  EXPECT_EQ(conv_site_candidates(OpKind::conv2d_fwd, {kNondet, kPlain}),
            (std::vector<std::string>{"f32_conv2d_fwd__cudnn_engine3_nondeterministic",
                                      "f32_conv2d_fwd__cudnn_engine34_k2v3", "f32_conv2d_fwd__cuda_im2col_cublaslt"}));
  // Without cuDNN: the im2col variant alone.
  EXPECT_EQ(conv_site_candidates(OpKind::conv2d_bwd_data, {}),
            (std::vector<std::string>{"f32_conv2d_bwd_data__cuda_im2col_cublaslt"}));
}

TEST(ConvSites, DefaultTakesCudnnsFirstOrTheIm2colVariantWithoutCudnn) {
  for (Policy policy : {Policy::fast, Policy::forced}) {
    auto p = pick_conv(policy, {kNondet, kPlain}, im2col_ok(false));
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->index, 0u);
    EXPECT_TRUE(has(p->reason, "declared nondeterministic")) << p->reason;
    auto alone = pick_conv(policy, {}, im2col_ok(false));
    ASSERT_TRUE(alone) << alone.error().message;
    EXPECT_EQ(alone->index, 0u);
    EXPECT_TRUE(has(alone->reason, "im2col + cuBLASLt variant, the only candidate")) << alone->reason;
  }
  ConvIm2col none;
  none.runs = false;
  none.why_not = "cuBLASLt: no algorithm";
  auto nothing = pick_conv(Policy::fast, {}, none);
  ASSERT_FALSE(nothing);
  EXPECT_TRUE(has(nothing.error().message, "cuBLASLt: no algorithm")) << nothing.error().message;
}

TEST(ConvSites, DeterministicFiltersTheCombinedList) {
  for (Policy policy : {Policy::deterministic, Policy::portable}) {
    // A deterministic engine after a nondeterministic one: the engine, and the rejected one is named.
    auto p = pick_conv(policy, {kNondet, kPlain}, im2col_ok());
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->index, 1u);
    ASSERT_EQ(p->rejected.size(), 1u);
    EXPECT_EQ(p->rejected[0], "engine 3: CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC");
    EXPECT_TRUE(has(p->reason, "rejected: engine 3: CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC")) << p->reason;
    // Every engine nondeterministic: the im2col variant when its cuBLASLt pick is deterministic.
    auto im2col = pick_conv(policy, {kNondet}, im2col_ok());
    ASSERT_TRUE(im2col) << im2col.error().message;
    EXPECT_EQ(im2col->index, 1u);
    EXPECT_TRUE(has(im2col->reason, "every cuDNN engine being declared nondeterministic")) << im2col->reason;
    EXPECT_TRUE(has(im2col->reason, "engine 3")) << im2col->reason;
    // ... and an error naming each candidate when it is not.
    auto none = pick_conv(policy, {kNondet}, im2col_ok(false));
    ASSERT_FALSE(none);
    EXPECT_TRUE(has(none.error().message, "engine 3: CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC")) << none.error().message;
    EXPECT_TRUE(has(none.error().message, "the im2col + cuBLASLt variant: its cuBLASLt algorithm is split over K"))
        << none.error().message;
    // Without cuDNN, the variant alone.
    auto alone = pick_conv(policy, {}, im2col_ok());
    ASSERT_TRUE(alone);
    EXPECT_EQ(alone->index, 0u);
    EXPECT_FALSE(pick_conv(policy, {}, im2col_ok(false)));
  }
}

TEST(ConvSites, AutotuneTimesEveryCandidateTheIm2colVariantLast) {
  const double inf = std::numeric_limits<double>::infinity();
  auto p = pick_conv(Policy::autotune, {kNondet, kPlain}, im2col_ok(), {9.0, 7.5, 4.0});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->index, 2u);
  EXPECT_TRUE(has(p->reason, "fastest of 3 timed (2 cuDNN engines and the im2col + cuBLASLt variant)")) << p->reason;
  // A candidate that failed to run has +inf: never the fastest.
  p = pick_conv(Policy::autotune, {kNondet, kPlain}, im2col_ok(), {inf, 7.5, inf});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index, 1u);
  EXPECT_FALSE(pick_conv(Policy::autotune, {kPlain}, im2col_ok(), {inf, inf}));
  // One timing per candidate, the variant included.
  EXPECT_FALSE(pick_conv(Policy::autotune, {kNondet, kPlain}, im2col_ok(), {1.0, 2.0}));
}

TEST(ConvSites, ForcedIdsNameARecordedEngineOneOfThisMachinesOrTheIm2colVariant) {
  const OpKind op = OpKind::conv2d_bwd_filter;
  const std::vector<CudnnEngine> recorded = {kNondet, kPlain}, here = {engine(12), kPlain};
  ConvForcedTarget t = find_forced_conv(cudnn_kernel_id(op, kPlain), op, recorded, here);
  EXPECT_EQ(t.from, ConvForcedTarget::From::recorded);
  EXPECT_EQ(t.index, 1u);
  t = find_forced_conv(cudnn_kernel_id(op, engine(12)), op, recorded, here);
  EXPECT_EQ(t.from, ConvForcedTarget::From::here);
  EXPECT_EQ(t.index, 0u);
  EXPECT_EQ(find_forced_conv(conv_im2col_id(op), op, recorded, here).from, ConvForcedTarget::From::im2col);
  // Another op's im2col id, a cuBLASLt algorithm's id, a CPU kernel: unknown here.
  EXPECT_EQ(find_forced_conv(conv_im2col_id(OpKind::conv2d_fwd), op, recorded, here).from,
            ConvForcedTarget::From::unknown);
  EXPECT_EQ(find_forced_conv(blaslt_kernel_id(algo(21)), op, recorded, here).from, ConvForcedTarget::From::unknown);
  EXPECT_EQ(find_forced_conv("f32_conv2d_bwd_filter__cpu_im2col_avx2", op, recorded, here).from,
            ConvForcedTarget::From::unknown);
}

// A conv choice as the CUDA device records one: two engines, then the im2col variant with its algorithm.
KernelChoice conv_choice(const std::string& chosen_id) {
  KernelChoice k;
  k.site = "conv2d_1/conv.fwd";
  k.op = "conv2d_fwd";
  k.cudnn = {kNondet, kPlain};
  k.candidates = conv_site_candidates(OpKind::conv2d_fwd, k.cudnn);
  k.cudnn_version = 91900;
  k.blaslt = {algo(21)};
  k.blaslt_version = 130100;
  k.chosen = chosen_id;
  return k;
}

TEST(ConvSites, AChoiceTellsWhichEngineOrAlgorithmRan) {
  const KernelChoice cudnn = conv_choice(cudnn_kernel_id(OpKind::conv2d_fwd, kPlain));
  EXPECT_TRUE(has_conv_im2col_candidate(cudnn));
  ASSERT_NE(chosen_cudnn_engine(cudnn), nullptr);
  EXPECT_EQ(*chosen_cudnn_engine(cudnn), kPlain);
  EXPECT_EQ(chosen_blaslt_algo(cudnn), nullptr);  // the im2col variant's algorithm did not run
  const KernelChoice im2col = conv_choice(conv_im2col_id(OpKind::conv2d_fwd));
  EXPECT_EQ(chosen_cudnn_engine(im2col), nullptr);
  ASSERT_NE(chosen_blaslt_algo(im2col), nullptr);
  EXPECT_EQ(*chosen_blaslt_algo(im2col), algo(21));
  // A matmul site: the chosen candidate's algorithm.
  KernelChoice matmul;
  matmul.op = "matmul";
  matmul.blaslt = {algo(21), algo(6, 4, 1)};
  matmul.candidates = {blaslt_kernel_id(matmul.blaslt[0]), blaslt_kernel_id(matmul.blaslt[1])};
  matmul.chosen = matmul.candidates[1];
  EXPECT_FALSE(has_conv_im2col_candidate(matmul));
  ASSERT_NE(chosen_blaslt_algo(matmul), nullptr);
  EXPECT_EQ(*chosen_blaslt_algo(matmul), algo(6, 4, 1));
}

TEST(ConvSites, TheListsOfAChoiceAreCheckedAgainstItsCandidates) {
  KernelChoice k = conv_choice(conv_im2col_id(OpKind::conv2d_fwd));
  EXPECT_EQ(gpu_choice_lists_error(k), "");
  // Without the variant's algorithm (its cuBLASLt had none), or without cuDNN: fine too.
  KernelChoice no_algo = k;
  no_algo.blaslt.clear();
  EXPECT_EQ(gpu_choice_lists_error(no_algo), "");
  KernelChoice alone;
  alone.op = "conv2d_fwd";
  alone.candidates = {conv_im2col_id(OpKind::conv2d_fwd)};
  alone.chosen = alone.candidates[0];
  alone.blaslt = {algo(21)};
  alone.blaslt_version = 130100;
  EXPECT_EQ(gpu_choice_lists_error(alone), "");
  // The variant runs one algorithm.
  KernelChoice two = k;
  two.blaslt.push_back(algo(6));
  EXPECT_TRUE(has(gpu_choice_lists_error(two), "not the one that candidate runs")) << gpu_choice_lists_error(two);
  // Engines cover the first candidates, each under its own id.
  KernelChoice relabelled = k;
  std::swap(relabelled.candidates[0], relabelled.candidates[1]);
  EXPECT_TRUE(has(gpu_choice_lists_error(relabelled), "candidate 0 is not the id of its cuDNN engine"));
  KernelChoice too_many = k;
  too_many.cudnn.push_back(engine(7));
  too_many.cudnn.push_back(engine(8));
  EXPECT_TRUE(has(gpu_choice_lists_error(too_many), "more cuDNN engines than candidates"));
  KernelChoice no_version = k;
  no_version.cudnn_version = 0;
  EXPECT_TRUE(has(gpu_choice_lists_error(no_version), "cuDNN engines but no version"));
  KernelChoice not_conv = k;
  not_conv.op = "matmul";
  EXPECT_FALSE(gpu_choice_lists_error(not_conv).empty());
  // Without the im2col candidate, a conv choice keeps the matmul layout: one algorithm per candidate.
  KernelChoice older;
  older.op = "conv2d_fwd";
  older.blaslt = {algo(21), algo(6)};
  older.blaslt_version = 130100;
  older.candidates = {blaslt_kernel_id(older.blaslt[0]), blaslt_kernel_id(older.blaslt[1])};
  older.chosen = older.candidates[0];
  EXPECT_EQ(gpu_choice_lists_error(older), "");
  older.blaslt.pop_back();
  EXPECT_TRUE(has(gpu_choice_lists_error(older), "not one per candidate"));
}

TEST(ConvSites, WithoutTf32EnginesOnTensorCoresOrNarrowerInputsAreLeftOut) {
  CudnnEngine plain, tensor_core, narrowed, nondeterministic;
  plain.global_index = 1;
  tensor_core.global_index = 2, tensor_core.numerical_notes = {kCudnnNoteTensorCore};
  narrowed.global_index = 3, narrowed.numerical_notes = {kCudnnNoteDownConvertInputs};
  nondeterministic.global_index = 4, nondeterministic.numerical_notes = {kCudnnNoteNondeterministic};
  const std::vector<CudnnEngine> all = {plain, tensor_core, narrowed, nondeterministic};
  size_t dropped = 0;
  const auto f32 = conv_engines_for_precision(all, false, &dropped);
  ASSERT_EQ(f32.size(), 2u);
  EXPECT_EQ(f32[0].global_index, 1);
  EXPECT_EQ(f32[1].global_index, 4);
  EXPECT_EQ(dropped, 2u);
  EXPECT_EQ(conv_engines_for_precision(all, true, &dropped).size(), 4u);
  EXPECT_EQ(dropped, 0u);
}

}  // namespace
}  // namespace trainrr
