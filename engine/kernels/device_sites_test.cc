// The CUDA device's site rules, chunking, allocator sizes and optimizer slots, on the host.

#include "engine/kernels/device_sites.h"

#include <gtest/gtest.h>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "engine/layers/layer_test_util.h"
#include "engine/optimizer.h"

namespace trainrr {
namespace {

// What a recorded kernel choice is held to: every kernel a build registers or the device makes an id for is a
// kernel of its own op in some build, and an id no build has is none.
TEST(DeviceSites, EveryKernelIdOfAnyBuildHasItsOp) {
  KernelRegistry cpu;
  register_cpu_kernels(cpu);
  for (const Kernel& k : cpu.all()) EXPECT_EQ(kernel_op_in_any_build(k.info.id), k.info.op) << k.info.id;
  for (const std::string& id : device_reduce_candidates())
    EXPECT_EQ(kernel_op_in_any_build(id), OpKind::reduce) << id;
  BlasLtAlgo algo;
  algo.id = 21;
  algo.split_k = 4;
  EXPECT_EQ(kernel_op_in_any_build(blaslt_kernel_id(algo)), OpKind::matmul);
  for (const OpKind op : {OpKind::conv2d_fwd, OpKind::conv2d_bwd_data, OpKind::conv2d_bwd_filter}) {
    EXPECT_EQ(kernel_op_in_any_build(conv_im2col_id(op)), op);
    EXPECT_EQ(kernel_op_in_any_build(cudnn_kernel_id(op, CudnnEngine{})), op);
  }
  for (const char* id : {"f32_matmul__cpu_blocked_avx2", "f32_matmul__cpu_blocked_avx512",
                         "f32_conv2d_fwd__cpu_im2col_avx512", "f32_matmul__openblas_sgemm"})
    EXPECT_TRUE(kernel_op_in_any_build(id).has_value()) << id;
  for (const char* id : {"f32_matmul__cuda_nope", "f32_sum__cpu", "", "f32_conv2d_fwd__cpu_im2col_sse9",
                         "f32_matmul__cudnn_engine3"})
    EXPECT_FALSE(kernel_op_in_any_build(id).has_value()) << id;
}

TEST(DeviceSites, ReduceIdsAndCandidates) {
  EXPECT_STREQ(device_reduce_id(DeviceReduce::tree), "f32_sum__cuda_tree");
  EXPECT_STREQ(device_reduce_id(DeviceReduce::atomic), "f32_sum__cuda_atomic");
  EXPECT_EQ(device_reduce_candidates(), (std::vector<std::string>{"f32_sum__cuda_tree", "f32_sum__cuda_atomic"}));
}

TEST(DeviceSites, EachPolicyTakesItsReduction) {
  const DeviceReduceRule fast = device_reduce_rule(Policy::fast);
  EXPECT_EQ(fast.variant, DeviceReduce::atomic);
  EXPECT_FALSE(fast.time_both);
  EXPECT_TRUE(fast.reason.starts_with("default: ")) << fast.reason;
  for (Policy p : {Policy::deterministic, Policy::portable}) {
    const DeviceReduceRule r = device_reduce_rule(p);
    EXPECT_EQ(r.variant, DeviceReduce::tree) << policy_name(p);
    EXPECT_FALSE(r.time_both);
    EXPECT_TRUE(r.reason.starts_with(policy_name(p))) << r.reason;
  }
  const DeviceReduceRule tune = device_reduce_rule(Policy::autotune);
  EXPECT_TRUE(tune.time_both);
  EXPECT_EQ(tune.reason, "autotune");
  const DeviceReduceRule forced = device_reduce_rule(Policy::forced);
  EXPECT_EQ(forced.reason, "forced");
  EXPECT_EQ(forced.variant, DeviceReduce::atomic);  // the default's, for a site the hooks leave alone
  EXPECT_FALSE(forced.time_both);
}

TEST(DeviceSites, ForcedReduceIdsAreParsedAndOthersNamed) {
  auto tree = device_reduce_from_id("f32_sum__cuda_tree");
  ASSERT_TRUE(tree);
  EXPECT_EQ(*tree, DeviceReduce::tree);
  auto atomic = device_reduce_from_id("f32_sum__cuda_atomic");
  ASSERT_TRUE(atomic);
  EXPECT_EQ(*atomic, DeviceReduce::atomic);
  auto cpu = device_reduce_from_id("f32_sum__cpu_pairwise");
  ASSERT_FALSE(cpu);
  EXPECT_NE(cpu.error().message.find("f32_sum__cpu_pairwise"), std::string::npos) << cpu.error().message;
  EXPECT_NE(cpu.error().message.find("f32_sum__cuda_tree"), std::string::npos) << cpu.error().message;
  EXPECT_FALSE(device_reduce_from_id(""));
}

TEST(DeviceSites, AutotuneKeepsTheFasterReductionAndTiesGoToTheTree) {
  EXPECT_EQ(device_reduce_fastest({3.0, 2.0}).value(), DeviceReduce::atomic);
  EXPECT_EQ(device_reduce_fastest({2.0, 3.0}).value(), DeviceReduce::tree);
  EXPECT_EQ(device_reduce_fastest({2.0, 2.0}).value(), DeviceReduce::tree);
  EXPECT_FALSE(device_reduce_fastest({1.0}));
}

BlasLtAlgo algo(int32_t id, int32_t split_k = 1, uint32_t reduction = 0) {
  BlasLtAlgo a;
  a.id = id, a.split_k = split_k, a.reduction = reduction, a.tile = 18, a.stages = 20;
  a.data[0] = static_cast<uint64_t>(id);
  return a;
}

TEST(DeviceSites, ForcedBlasLtLooksInTheRecordedAlgorithmsFirst) {
  const std::vector<BlasLtAlgo> recorded = {algo(21), algo(6, 4, 1)}, here = {algo(6, 4, 1), algo(31)};
  BlasLtForcedTarget t = find_forced_blaslt(blaslt_kernel_id(algo(6, 4, 1)), recorded, here);
  EXPECT_EQ(t.from, BlasLtForcedTarget::From::recorded);
  EXPECT_EQ(t.index, 1u);
  t = find_forced_blaslt(blaslt_kernel_id(algo(31)), recorded, here);
  EXPECT_EQ(t.from, BlasLtForcedTarget::From::here);
  EXPECT_EQ(t.index, 1u);
  // A trace recorded on the CPU forces a CPU kernel: no cuBLASLt algorithm has its id.
  t = find_forced_blaslt("f32_matmul__cpu_blocked_avx2", recorded, here);
  EXPECT_EQ(t.from, BlasLtForcedTarget::From::unknown);
  // Hooks that recorded nothing: this machine's candidates.
  t = find_forced_blaslt(blaslt_kernel_id(algo(6, 4, 1)), {}, here);
  EXPECT_EQ(t.from, BlasLtForcedTarget::From::here);
  EXPECT_EQ(t.index, 0u);
}

Conv2dArgs conv(int64_t n, int64_t out_hw, int64_t k, int64_t c_in, int64_t c_out) {
  Conv2dArgs p;
  p.n = n, p.h = p.w = out_hw, p.out_h = p.out_w = out_hw, p.kh = p.kw = k, p.c_in = c_in, p.c_out = c_out;
  return p;
}

TEST(DeviceSites, ConvChunksAreDivisorsOfTheBatchWithinTheBudget) {
  const Conv2dArgs p = conv(32, 8, 3, 4, 5);  // 64 * 36 floats per image = 9216 bytes
  EXPECT_EQ(conv_col_floats_per_image(p), 64 * 36);
  EXPECT_EQ(conv_chunk_images(p, 256u << 20), 32);        // all at once
  EXPECT_EQ(conv_chunk_images(p, 32 * 9216), 32);         // exactly fits
  EXPECT_EQ(conv_chunk_images(p, 32 * 9216 - 1), 16);     // 31 fit: the largest divisor of 32 below is 16
  EXPECT_EQ(conv_chunk_images(p, 10 * 9216), 8);
  EXPECT_EQ(conv_chunk_images(p, 100), 1);                // not even one image: one at a time
  EXPECT_EQ(conv_chunk_images(conv(31, 8, 3, 4, 5), 30 * 9216), 1);  // a prime batch
  EXPECT_EQ(conv_chunk_images(conv(30, 8, 3, 4, 5), 29 * 9216), 15);
  EXPECT_EQ(conv_chunk_images(conv(1, 8, 3, 4, 5), 1), 1);
  EXPECT_EQ(conv_chunk_images(conv(0, 8, 3, 4, 5), 1), 1);
}

TEST(DeviceSites, TheLeastAlignedChunkIsTheSecondAndAlignmentIsAPowerOfTwoUpTo256) {
  EXPECT_EQ(conv_least_aligned_chunk(conv(32, 8, 3, 4, 5), 8), 8);
  EXPECT_EQ(conv_least_aligned_chunk(conv(32, 8, 3, 4, 5), 32), 0);  // one chunk
  // A second chunk of 3 images of 3x3 pixels and 5 channels starts 135 floats in: 4-byte aligned only.
  Conv2dArgs p = conv(6, 3, 3, 2, 5);
  alignas(256) static float out[6 * 9 * 5], dy[6 * 9 * 5];
  p.out = out, p.dy = dy;
  const int64_t second = conv_least_aligned_chunk(p, 3);
  EXPECT_EQ(second, 3);
  EXPECT_EQ(blaslt_alignment(conv_chunk_matmul(OpKind::conv2d_fwd, p, 0, 3, nullptr).c), 256u);
  EXPECT_EQ(blaslt_alignment(conv_chunk_matmul(OpKind::conv2d_fwd, p, second, 3, nullptr).c), 4u);
  EXPECT_EQ(blaslt_alignment(conv_chunk_matmul(OpKind::conv2d_bwd_data, p, second, 3, nullptr).a), 4u);
  EXPECT_EQ(blaslt_alignment(conv_chunk_matmul(OpKind::conv2d_bwd_filter, p, second, 3, nullptr).b), 4u);

  EXPECT_EQ(blaslt_alignment(nullptr), 256u);
  EXPECT_EQ(blaslt_alignment(reinterpret_cast<const void*>(uintptr_t{4096})), 256u);
  EXPECT_EQ(blaslt_alignment(reinterpret_cast<const void*>(uintptr_t{4096 + 16})), 16u);
  EXPECT_EQ(blaslt_alignment(reinterpret_cast<const void*>(uintptr_t{4096 + 4})), 4u);
  EXPECT_EQ(blaslt_alignment(reinterpret_cast<const void*>(uintptr_t{4096 + 128})), 128u);
  EXPECT_EQ(blaslt_alignment(reinterpret_cast<const void*>(uintptr_t{4097})), 1u);
}

TEST(DeviceSites, ConvChunkMatmulsAreTheIm2colProducts) {
  Conv2dArgs p = conv(6, 4, 3, 2, 5);  // 16 pixels an image, 18 taps
  std::vector<float> x(1), filter(18 * 5), dy(6 * 16 * 5), out(6 * 16 * 5), col(1);
  p.x = x.data(), p.filter = filter.data(), p.dy = dy.data(), p.out = out.data();

  MatmulArgs f = conv_chunk_matmul(OpKind::conv2d_fwd, p, 2, 3, col.data());
  EXPECT_EQ(f.m, 48);
  EXPECT_EQ(f.k, 18);
  EXPECT_EQ(f.n, 5);
  EXPECT_FALSE(f.trans_a || f.trans_b || f.accumulate);
  EXPECT_EQ(f.a, col.data());
  EXPECT_EQ(f.b, filter.data());
  EXPECT_EQ(f.c, out.data() + 2 * 16 * 5);

  MatmulArgs d = conv_chunk_matmul(OpKind::conv2d_bwd_data, p, 3, 3, col.data());
  EXPECT_EQ(d.m, 48);
  EXPECT_EQ(d.k, 5);
  EXPECT_EQ(d.n, 18);
  EXPECT_TRUE(d.trans_b);
  EXPECT_FALSE(d.trans_a || d.accumulate);
  EXPECT_EQ(d.a, dy.data() + 3 * 16 * 5);
  EXPECT_EQ(d.b, filter.data());
  EXPECT_EQ(d.c, col.data());

  MatmulArgs w0 = conv_chunk_matmul(OpKind::conv2d_bwd_filter, p, 0, 3, col.data());
  EXPECT_EQ(w0.m, 18);
  EXPECT_EQ(w0.k, 48);
  EXPECT_EQ(w0.n, 5);
  EXPECT_TRUE(w0.trans_a);
  EXPECT_FALSE(w0.trans_b);
  EXPECT_FALSE(w0.accumulate);
  EXPECT_EQ(w0.a, col.data());
  EXPECT_EQ(w0.b, dy.data());
  EXPECT_EQ(w0.c, out.data());
  MatmulArgs w1 = conv_chunk_matmul(OpKind::conv2d_bwd_filter, p, 3, 3, col.data());
  EXPECT_TRUE(w1.accumulate);  // later chunks add into dfilter
  EXPECT_EQ(w1.b, dy.data() + 3 * 16 * 5);
  EXPECT_EQ(w1.c, out.data());
}

TEST(DeviceSites, AllocatorBlocksAreRoundedAndReusedWithinTwice) {
  EXPECT_EQ(device_block_bytes(0), 256u);
  EXPECT_EQ(device_block_bytes(1), 256u);
  EXPECT_EQ(device_block_bytes(256), 256u);
  EXPECT_EQ(device_block_bytes(257), 512u);
  EXPECT_EQ(device_block_bytes(4000), 4096u);
  EXPECT_TRUE(device_block_fits(512, 512));
  EXPECT_TRUE(device_block_fits(1024, 512));
  EXPECT_FALSE(device_block_fits(1280, 512));  // more than twice
  EXPECT_FALSE(device_block_fits(256, 512));   // too small
}

// The CPU optimizer's slot names in its order, from its state after one step of a one-value parameter.
std::vector<std::string> slot_names(const OptimizerConfig& config) {
  testing::TestRuntime t;
  Param p{"w", Tensor({1}, 1.0f), Tensor({1}, 0.5f)};
  auto opt = make_optimizer(config);
  opt->step({&p}, t.rt);
  std::vector<std::string> names;
  for (const NamedTensor& s : opt->state()) names.push_back(s.name.substr(0, s.name.find('/')));
  return names;
}

TEST(DeviceSites, OptimizerSlotsAreInTheOptimizersOrder) {
  struct Case {
    std::string type;
    double momentum;
    bool centered;
  };
  const Case cases[] = {{"sgd", 0, false},     {"sgd", 0.9, false},    {"adam", 0, false},
                        {"adamw", 0, false},   {"rmsprop", 0, false},  {"rmsprop", 0.5, false},
                        {"rmsprop", 0, true},  {"rmsprop", 0.5, true}};
  for (const Case& c : cases) {
    OptimizerConfig config;
    config.type = c.type, config.momentum = c.momentum, config.centered = c.centered;
    const std::string what = c.type + " momentum " + std::to_string(c.momentum) + (c.centered ? " centered" : "");
    auto s = device_optimizer_slots(config);
    ASSERT_TRUE(s) << s.error().message;
    const std::vector<std::string> names = slot_names(config);
    ASSERT_EQ(s->count, names.size()) << what;
    auto at = [&](int i) { return i < 0 ? std::string("(none)") : names.at(static_cast<size_t>(i)); };
    if (s->momentum >= 0) {
      EXPECT_EQ(at(s->momentum), "momentum") << what;
    }
    if (s->m >= 0) {
      EXPECT_EQ(at(s->m), "m") << what;
    }
    if (s->v >= 0) {
      EXPECT_EQ(at(s->v), "v") << what;
    }
    if (s->velocity >= 0) {
      EXPECT_EQ(at(s->velocity), "velocity") << what;
    }
    if (s->average_gradient >= 0) {
      EXPECT_EQ(at(s->average_gradient), "average_gradient") << what;
    }
    const int used = (s->momentum >= 0) + (s->m >= 0) + (s->v >= 0) + (s->velocity >= 0) + (s->average_gradient >= 0);
    EXPECT_EQ(static_cast<size_t>(used), names.size()) << what;
  }
  OptimizerConfig bad;
  bad.type = "adagrad";
  auto s = device_optimizer_slots(bad);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("adagrad"), std::string::npos);
}

}  // namespace
}  // namespace trainrr
