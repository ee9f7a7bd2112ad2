// Causes on GPU evidence: the library's algorithm or engine on each side, and the GPU kernels declared
// nondeterministic (atomic reductions, cuDNN engines with CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC), and at a conv
// site whether a cuDNN engine or the im2col + cuBLASLt variant ran.

#include <gtest/gtest.h>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "replayer/cause.h"

namespace trainrr {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

FirstDivergence at(const std::string& site, const std::string& recorded, const std::string& replayed) {
  FirstDivergence d;
  d.step = 3;
  d.phase = "backward";
  d.kind = "probe";
  d.site = site + ":out";
  d.kernel_recorded = recorded;
  d.kernel_replayed = replayed;
  return d;
}

TEST(GpuCause, AnAtomicReductionIsNamedAsTheNondeterministicKernel) {
  CauseInputs in;
  const Cause c = classify(at("dense_1/bias.bwd", "f32_sum__cuda_atomic", "f32_sum__cuda_atomic"), in);
  EXPECT_EQ(c.category, "numeric");
  EXPECT_TRUE(has(c.detail, "same kernel f32_sum__cuda_atomic")) << c.detail;
  EXPECT_TRUE(has(c.detail, "atomicAdd, in the order the GPU's threads arrive")) << c.detail;
}

TEST(GpuCause, ANondeterministicCudnnEngineIsNamedWithItsNote) {
  CudnnEngine e;
  e.global_index = 3;
  e.numerical_notes = {kCudnnNoteNondeterministic};
  const std::string id = cudnn_kernel_id(OpKind::conv2d_bwd_filter, e);
  const Cause c = classify(at("conv2d_1/conv.bwd_filter", id, id), CauseInputs{});
  EXPECT_EQ(c.category, "numeric");
  EXPECT_TRUE(has(c.detail, "cuDNN engine 3 is declared nondeterministic (CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC): "
                            "same engine (" + id + "), same inputs, different output"))
      << c.detail;
  // An engine cuDNN does not declare nondeterministic is not blamed for it.
  e.numerical_notes = {kCudnnNoteTensorCore};
  const std::string plain = cudnn_kernel_id(OpKind::conv2d_bwd_filter, e);
  EXPECT_FALSE(has(classify(at("conv2d_1/conv.bwd_filter", plain, plain), CauseInputs{}).detail, "declared nondeterministic"));
}

TEST(GpuCause, DifferentCublasLtAlgorithmsAreDescribedOnEachSide) {
  BlasLtAlgo split;
  split.id = 21, split.tile = 18, split.stages = 20, split.split_k = 4, split.reduction = 1;
  BlasLtAlgo whole = split;
  whole.split_k = 1, whole.reduction = 0;
  KernelChoice a{"dense_1/matmul.bwd_weight", "matmul", {blaslt_kernel_id(split), blaslt_kernel_id(whole)},
                 blaslt_kernel_id(split), "default: cuBLASLt's heuristic's first", {}};
  a.blaslt = {split, whole};
  a.blaslt_version = 130100;
  KernelChoice b = a;
  b.chosen = blaslt_kernel_id(whole);
  b.reason = "deterministic: cuBLASLt's heuristic's first";
  CauseInputs in;
  in.kernel_picks["dense_1/matmul.bwd_weight"] = {kernel_pick(a), kernel_pick(b)};
  const Cause c = classify(at("dense_1/matmul.bwd_weight", a.chosen, b.chosen), in);
  EXPECT_EQ(c.category, "kernel");
  EXPECT_TRUE(has(c.detail, "recorded ran cuBLASLt algorithm 21, tile 18, stages 20, split-K 4, reduced in place")) << c.detail;
  EXPECT_TRUE(has(c.detail, "replayed ran cuBLASLt algorithm 21, tile 18, stages 20, not split over K")) << c.detail;
  EXPECT_FALSE(has(c.detail, "timings vary")) << c.detail;  // nothing was timed
}

// A GPU kernel against a CPU one: the hosts' instruction sets and thread counts say nothing of what the GPU
// computed, and are not given as the reason.
TEST(GpuCause, AGpuKernelAgainstACpuOneIsNotPutDownToTheHostsInstructionSet) {
  CauseInputs in;
  in.environment.push_back({"isa", "generic", "avx512"});
  in.environment.push_back({"threads", "1", "2"});
  const Cause c = classify(at("dense_1/matmul.fwd", "f32_matmul__cublaslt_algo21_tile18_stages20",
                              "f32_matmul__cpu_blocked_avx512"),
                           in);
  EXPECT_EQ(c.category, "kernel");
  EXPECT_FALSE(has(c.detail, "instruction set")) << c.detail;
  EXPECT_FALSE(has(c.detail, "threads")) << c.detail;
  // Two CPU kernels: the instruction sets are the reason, as they decide the pick.
  const Cause cpu = classify(
      at("dense_1/matmul.fwd", "f32_matmul__cpu_blocked_generic", "f32_matmul__cpu_blocked_avx512"), in);
  EXPECT_TRUE(has(cpu.detail, "; instruction set generic vs avx512")) << cpu.detail;
}

TEST(GpuCause, AnAutotunedCudnnPickShowsItsTimings) {
  CudnnEngine e34, e12;
  e34.global_index = 34;
  e12.global_index = 12;
  const std::string id34 = cudnn_kernel_id(OpKind::conv2d_fwd, e34), id12 = cudnn_kernel_id(OpKind::conv2d_fwd, e12);
  KernelChoice a{"conv2d_1/conv.fwd", "conv2d_fwd", {id34, id12}, id34, "autotune: fastest of 2 engines timed", {11.0, 12.5}};
  a.cudnn = {e34, e12};
  a.cudnn_version = 91900;
  KernelChoice b = a;
  b.chosen = id12;
  b.timings_us = {13.0, 12.0};
  CauseInputs in;
  in.kernel_picks["conv2d_1/conv.fwd"] = {kernel_pick(a), kernel_pick(b)};
  const Cause c = classify(at("conv2d_1/conv.fwd", id34, id12), in);
  EXPECT_EQ(c.category, "kernel");
  EXPECT_TRUE(has(c.detail, "a different kernel ran at conv2d_1/conv.fwd: " + id34 + " (recorded), " + id12)) << c.detail;
  EXPECT_TRUE(has(c.detail, "picked " + id34 + " by timing (autotune)")) << c.detail;
  EXPECT_TRUE(has(c.detail, "timings vary from run to run")) << c.detail;
}

TEST(GpuCause, AConvSiteSaysWhetherACudnnEngineOrTheIm2colVariantRan) {
  // The CUDA device's conv site: cuDNN's engines, then the im2col + cuBLASLt variant, whose one algorithm the
  // choice records apart from the engines (engine/kernels/conv_sites.h).
  CudnnEngine e34;
  e34.global_index = 34;
  e34.numerical_notes = {kCudnnNoteTensorCore};
  BlasLtAlgo algo;
  algo.id = 21, algo.tile = 18, algo.stages = 20;
  KernelChoice a{"conv2d_1/conv.fwd", "conv2d_fwd", {}, "", "default: cuDNN's heuristic's first", {}};
  a.cudnn = {e34};
  a.cudnn_version = 91900;
  a.candidates = conv_site_candidates(OpKind::conv2d_fwd, a.cudnn);
  a.chosen = a.candidates[0];
  a.blaslt = {algo};
  a.blaslt_version = 130100;
  KernelChoice b = a;
  b.chosen = conv_im2col_id(OpKind::conv2d_fwd);
  b.reason = "forced";
  CauseInputs in;
  in.kernel_picks["conv2d_1/conv.fwd"] = {kernel_pick(a), kernel_pick(b)};
  const Cause c = classify(at("conv2d_1/conv.fwd", a.chosen, b.chosen), in);
  EXPECT_EQ(c.category, "kernel");
  // The engine that ran, not the im2col variant's algorithm, on the side that ran cuDNN.
  EXPECT_TRUE(has(c.detail, "recorded ran cuDNN engine 34 (notes: CUDNN_NUMERICAL_NOTE_TENSOR_CORE)")) << c.detail;
  EXPECT_FALSE(has(c.detail, "recorded ran cuBLASLt")) << c.detail;
  EXPECT_TRUE(has(c.detail, "replayed ran im2col and a cuBLASLt matmul (not cuDNN), cuBLASLt algorithm 21, tile 18, "
                            "stages 20, not split over K"))
      << c.detail;
  // Without its algorithm recorded, the variant is still named for what it is.
  b.blaslt.clear();
  b.blaslt_version = 0;
  EXPECT_EQ(kernel_pick(b), "ran im2col and a cuBLASLt matmul (not cuDNN)");
  // The same variant on both sides with other bits: not blamed on a cuDNN engine's note.
  const std::string id = conv_im2col_id(OpKind::conv2d_fwd);
  const Cause same = classify(at("conv2d_1/conv.fwd", id, id), CauseInputs{});
  EXPECT_EQ(same.category, "numeric");
  EXPECT_FALSE(has(same.detail, "cuDNN engine")) << same.detail;
  EXPECT_TRUE(has(same.detail, "same kernel " + id)) << same.detail;
}

}  // namespace
}  // namespace trainrr
