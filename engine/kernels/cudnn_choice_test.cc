// The policies' rules over cuDNN engines, described by hand as cuDNN's heuristics would list them.

#include "engine/kernels/cudnn_choice.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

CudnnEngine engine(int64_t index, std::vector<int32_t> notes = {}, std::vector<CudnnKnob> knobs = {}) {
  CudnnEngine e;
  e.global_index = index;
  e.numerical_notes = std::move(notes);
  e.knobs = std::move(knobs);
  return e;
}

TEST(CudnnChoice, KernelIdsNameOpEngineKnobsAndNondeterminism) {
  EXPECT_EQ(cudnn_kernel_id(OpKind::conv2d_fwd, engine(34, {kCudnnNoteTensorCore}, {{2, 3}, {14, 4}})),
            "f32_conv2d_fwd__cudnn_engine34_k2v3_k14v4");
  EXPECT_EQ(cudnn_kernel_id(OpKind::conv2d_bwd_filter, engine(3, {kCudnnNoteNondeterministic})),
            "f32_conv2d_bwd_filter__cudnn_engine3_nondeterministic");
  EXPECT_EQ(cudnn_describe(engine(34, {0, 4}, {{2, 3}, {99, 1}})),
            "cuDNN engine 34 (knobs tile 3, knob 99 1; notes: CUDNN_NUMERICAL_NOTE_TENSOR_CORE, "
            "CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC)");
  EXPECT_EQ(cudnn_describe(engine(7)), "cuDNN engine 7");
  EXPECT_EQ(cudnn_numerical_note_name(42), "numerical note 42");
}

TEST(CudnnChoice, DefaultTakesTheFirstWhateverItsNotesSay) {
  auto p = pick_cudnn(Policy::fast, {engine(3, {kCudnnNoteNondeterministic}), engine(12)});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index, 0u);
  EXPECT_NE(p->reason.find("declared nondeterministic"), std::string::npos) << p->reason;
}

TEST(CudnnChoice, DeterministicRejectsNondeterministicEnginesAndSaysWhich) {
  auto p = pick_cudnn(Policy::deterministic,
                      {engine(3, {kCudnnNoteNondeterministic}), engine(5, {0, kCudnnNoteNondeterministic}), engine(12, {0})});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->index, 2u);
  ASSERT_EQ(p->rejected.size(), 2u);
  EXPECT_EQ(p->rejected[0], "engine 3: CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC");
  EXPECT_NE(p->reason.find("2 rejected"), std::string::npos);
  auto none = pick_cudnn(Policy::deterministic, {engine(3, {kCudnnNoteNondeterministic})});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("engine 3"), std::string::npos) << none.error().message;
}

TEST(CudnnChoice, AutotuneTakesTheFastest) {
  auto p = pick_cudnn(Policy::autotune, {engine(1), engine(2), engine(3)}, {9.0, 4.0, 4.5});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index, 1u);
  EXPECT_FALSE(pick_cudnn(Policy::autotune, {engine(1)}, {}));
}

TEST(CudnnChoice, ForcingFallsBackWithANoteOnAnotherVersionOrGpu) {
  const CudnnEngine e = engine(34, {}, {{2, 3}});
  EXPECT_TRUE(force_cudnn(e, OpKind::conv2d_fwd, 91900, 91900, true, "conv2d_1/conv.fwd").recorded);
  CudnnForce v = force_cudnn(e, OpKind::conv2d_fwd, 91900, 92000, true, "conv2d_1/conv.fwd");
  EXPECT_FALSE(v.recorded);
  EXPECT_NE(v.note.find("recorded with cuDNN 91900, and this is 92000"), std::string::npos) << v.note;
  CudnnForce g = force_cudnn(e, OpKind::conv2d_fwd, 91900, 91900, false, "conv2d_1/conv.fwd");
  EXPECT_FALSE(g.recorded);
  EXPECT_NE(g.note.find("cannot be built on this GPU"), std::string::npos) << g.note;
}

}  // namespace
}  // namespace trainrr
