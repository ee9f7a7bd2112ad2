// The policies' rules over cuBLASLt candidates, described by hand as the heuristic would list them.

#include "engine/kernels/blaslt_choice.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

BlasLtAlgo algo(int32_t id, int32_t split_k = 1, uint32_t reduction = 0, uint32_t tile = 18, uint32_t stages = 20) {
  BlasLtAlgo a;
  a.id = id;
  a.split_k = split_k;
  a.reduction = reduction;
  a.tile = tile;
  a.stages = stages;
  a.data[0] = static_cast<uint64_t>(id);
  return a;
}

TEST(BlasLtChoice, KernelIdsNameWhatTellsAlgorithmsApart) {
  EXPECT_EQ(blaslt_kernel_id(algo(21)), "f32_matmul__cublaslt_algo21_tile18_stages20");
  EXPECT_EQ(blaslt_kernel_id(algo(21, 4, 1)), "f32_matmul__cublaslt_algo21_tile18_stages20_splitk4_inplace");
  EXPECT_EQ(blaslt_kernel_id(algo(6, 2, 2)), "f32_matmul__cublaslt_algo6_tile18_stages20_splitk2_computetype");
  EXPECT_EQ(blaslt_kernel_id(algo(6, 2, 9)), "f32_matmul__cublaslt_algo6_tile18_stages20_splitk2_scheme9");
  BlasLtAlgo a = algo(66);
  a.swizzle = 1;
  a.cluster_shape = 3;
  EXPECT_EQ(blaslt_kernel_id(a), "f32_matmul__cublaslt_algo66_tile18_stages20_swizzle1_cluster3");
  EXPECT_NE(blaslt_kernel_id(algo(21, 4, 1)), blaslt_kernel_id(algo(21, 4, 2)));
}

TEST(BlasLtChoice, DefaultTakesTheHeuristicsFirstWhateverItIs) {
  auto p = pick_blaslt(Policy::fast, {algo(21, 4, 7), algo(6)});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->index, 0u);
  EXPECT_NE(p->reason.find("default"), std::string::npos);
}

TEST(BlasLtChoice, DeterministicPassesOverSplitKWithoutAnOrderedReduction) {
  // Not split, or split with a documented ordered scheme: taken. Split with NONE or an unknown scheme: not.
  EXPECT_TRUE(blaslt_deterministic(algo(1)));
  EXPECT_TRUE(blaslt_deterministic(algo(1, 4, 1)));
  EXPECT_TRUE(blaslt_deterministic(algo(1, 4, 2)));
  EXPECT_TRUE(blaslt_deterministic(algo(1, 4, 4)));
  EXPECT_FALSE(blaslt_deterministic(algo(1, 4, 0)));
  EXPECT_FALSE(blaslt_deterministic(algo(1, 4, 8)));
  auto p = pick_blaslt(Policy::deterministic, {algo(21, 4, 0), algo(22, 2, 7), algo(6, 1), algo(7)});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->index, 2u);
  ASSERT_EQ(p->rejected.size(), 2u);
  EXPECT_NE(p->rejected[0].find("splitk4_none"), std::string::npos) << p->rejected[0];
  EXPECT_NE(p->rejected[1].find("undocumented"), std::string::npos) << p->rejected[1];
  EXPECT_NE(p->reason.find("2 passed over"), std::string::npos) << p->reason;
  // The same rules for portable.
  auto q = pick_blaslt(Policy::portable, {algo(21, 4, 0), algo(6, 1)});
  ASSERT_TRUE(q);
  EXPECT_EQ(q->index, 1u);
}

TEST(BlasLtChoice, DeterministicWithNothingOrderedIsAnErrorThatNamesEachCandidate) {
  auto p = pick_blaslt(Policy::deterministic, {algo(21, 4, 0), algo(22, 8, 0)});
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("algo21"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("algo22"), std::string::npos) << p.error().message;
  EXPECT_FALSE(pick_blaslt(Policy::fast, {}));
}

TEST(BlasLtChoice, AutotuneTakesTheFastestAndTiesGoToTheEarlier) {
  auto p = pick_blaslt(Policy::autotune, {algo(1), algo(2), algo(3)}, {5.0, 3.0, 3.0});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index, 1u);
  EXPECT_FALSE(pick_blaslt(Policy::autotune, {algo(1), algo(2)}, {1.0}));
}

TEST(BlasLtChoice, ForcingFallsBackWithANoteWhenTheAlgorithmCannotBeRestored) {
  const BlasLtAlgo a = algo(21, 4, 1);
  EXPECT_TRUE(force_blaslt(a, 130100, 130100, true, "dense/matmul.fwd").recorded);
  BlasLtForce other_version = force_blaslt(a, 130100, 130200, true, "dense/matmul.fwd");
  EXPECT_FALSE(other_version.recorded);
  EXPECT_NE(other_version.note.find("130100"), std::string::npos) << other_version.note;
  EXPECT_NE(other_version.note.find("dense/matmul.fwd"), std::string::npos) << other_version.note;
  BlasLtForce other_gpu = force_blaslt(a, 130100, 130100, false, "dense/matmul.fwd");
  EXPECT_FALSE(other_gpu.recorded);
  EXPECT_NE(other_gpu.note.find("cublasLtMatmulAlgoCheck"), std::string::npos) << other_gpu.note;
}

}  // namespace
}  // namespace trainrr
