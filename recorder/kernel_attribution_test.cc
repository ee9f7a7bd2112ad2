#include "recorder/kernel_attribution.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

KernelRecord kernel(uint32_t corr, std::string name, uint64_t start, uint64_t end, uint32_t grid_x = 4) {
  KernelRecord k;
  k.correlation_id = corr;
  k.name = std::move(name);
  k.grid_x = grid_x, k.grid_y = 1, k.grid_z = 1;
  k.block_x = 128, k.block_y = 1, k.block_z = 1;
  k.start_ns = start;
  k.end_ns = end;
  return k;
}

ExternalCorrelationRecord tagged(uint32_t corr, int64_t step, uint32_t op) {
  return {corr, external_id(step, op).value(), kTrainrrExternalKind};
}

const std::vector<std::string> kSites = {"dense_1/matmul.fwd", "dense_1/bias_add.fwd", "dense_1/matmul.bwd"};

TEST(ExternalId, HoldsTheStepAboveTwentyBitsOfOpIndex) {
  EXPECT_EQ(external_id(0, 0).value(), 0u);
  EXPECT_EQ(external_id(5, 3).value(), (uint64_t{5} << 20) | 3);
  EXPECT_EQ(step_op(external_id(123456789, kMaxOpsPerStep - 1).value()), (StepOp{123456789, kMaxOpsPerStep - 1}));
  auto op = external_id(2, kMaxOpsPerStep);
  ASSERT_FALSE(op);
  EXPECT_EQ(op.error().message,
            "op index 1048576 of step 2 cannot be tagged: an external correlation id holds 1048576 ops per step");
  EXPECT_FALSE(external_id(-1, 0));
  EXPECT_FALSE(external_id(int64_t{1} << 43, 0));
  EXPECT_TRUE(external_id((int64_t{1} << 43) - 1, 0));
}

TEST(Attributor, JoinsEachKernelToItsStepAndOpInLaunchOrder) {
  Attributor at(kSites);
  // As CUPTI delivers them: the external correlation before each API record, the kernels later, in the order
  // they completed, not the order they were launched.
  at.add(tagged(10, 5, 0));
  at.add(ApiRecord{10, 505, ApiDomain::runtime});
  at.add(tagged(11, 5, 1));
  at.add(ApiRecord{11, 307, ApiDomain::driver});
  at.add(tagged(12, 5, 2));
  at.add(ApiRecord{12, 307, ApiDomain::driver});
  at.add(kernel(12, "gemm_bwd", 3000, 3900));
  at.add(kernel(10, "gemm_fwd", 1000, 1800));
  at.add(kernel(11, "bias_add", 2000, 2100));
  at.add(kernel(12, "splitk_reduce", 4000, 4050));  // one cuBLASLt call, two kernels
  const Attribution a = at.join();
  EXPECT_EQ(a.seen, 4u);
  EXPECT_EQ(a.attributed, 4u);
  EXPECT_TRUE(a.unattributed.empty());
  ASSERT_EQ(a.kernels.size(), 4u);
  const std::vector<std::pair<std::string, std::string>> want = {{"gemm_fwd", "dense_1/matmul.fwd"},
                                                                 {"bias_add", "dense_1/bias_add.fwd"},
                                                                 {"gemm_bwd", "dense_1/matmul.bwd"},
                                                                 {"splitk_reduce", "dense_1/matmul.bwd"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(a.kernels[i].kernel.name, want[i].first) << i;
    EXPECT_EQ(a.kernels[i].site, want[i].second) << i;
    ASSERT_TRUE(a.kernels[i].at);
    EXPECT_EQ(a.kernels[i].at->step, 5);
    EXPECT_TRUE(a.kernels[i].why.empty());
  }
  EXPECT_EQ(a.kernels[0].duration_ns(), 800u);
  ASSERT_TRUE(a.kernels[1].api);
  EXPECT_EQ(a.kernels[1].api->cbid, 307u);
  EXPECT_EQ(a.kernels[1].api->domain, ApiDomain::driver);
  EXPECT_EQ(a.steps(), (std::vector<int64_t>{5}));
}

TEST(Attributor, KernelsStartingTogetherAreOrderedByCorrelationId) {
  Attributor at(kSites);
  for (uint32_t corr : {7u, 3u, 5u}) at.add(tagged(corr, 0, corr % 3));
  // No timestamps (start and end 0): the launches' correlation ids, which CUPTI hands out in call order, decide.
  at.add(kernel(7, "c", 0, 0));
  at.add(kernel(3, "a", 0, 0));
  at.add(kernel(5, "b", 0, 0));
  const Attribution a = at.join();
  ASSERT_EQ(a.kernels.size(), 3u);
  EXPECT_EQ(a.kernels[0].kernel.name, "a");
  EXPECT_EQ(a.kernels[1].kernel.name, "b");
  EXPECT_EQ(a.kernels[2].kernel.name, "c");
  EXPECT_EQ(a.kernels[2].duration_ns(), 0u);
}

TEST(Attributor, AKernelNoOpCanBeNamedForIsListedWithWhyNeverLeftOut) {
  Attributor at(kSites);
  at.add(tagged(1, 2, 0));
  at.add(kernel(1, "ours", 100, 200));
  at.add(ApiRecord{2, 211, ApiDomain::runtime});  // a launch outside every op (a library's set-up, say)
  at.add(kernel(2, "setup", 110, 120));
  at.add(kernel(3, "orphan", 120, 130));  // neither its API record nor a correlation
  at.add(ExternalCorrelationRecord{4, 99, 0});  // another tool's id only (kind 0: unknown)
  at.add(kernel(4, "theirs", 130, 140));
  at.add(tagged(5, 2, 40));  // an op index past the table
  at.add(kernel(5, "past", 140, 150));
  at.add(tagged(6, 2, 0));
  at.add(tagged(6, 3, 1));  // two of trainrr's ids on one call
  at.add(tagged(6, 2, 0));  // a repeat is the same id, not a second one
  at.add(kernel(6, "mixed", 150, 160));
  at.add_dropped(7);
  at.add_dropped(2);
  const Attribution a = at.join();
  EXPECT_EQ(a.seen, 6u);
  EXPECT_EQ(a.attributed, 1u);
  EXPECT_EQ(a.dropped, 9u);
  ASSERT_EQ(a.unattributed, (std::vector<size_t>{1, 2, 3, 4, 5}));
  for (size_t i : a.unattributed) {
    EXPECT_FALSE(a.kernels[i].at);
    EXPECT_EQ(a.kernels[i].site, trace::kUnattributedSite);
  }
  EXPECT_EQ(a.kernels[1].why,
            "the runtime API call (cbid 211, correlation id 2) carries no external correlation id: it was launched "
            "outside every op");
  EXPECT_TRUE(has(a.kernels[2].why, "CUPTI delivered neither the API record nor an external correlation for its "
                                    "launch (correlation id 3)"))
      << a.kernels[2].why;
  EXPECT_TRUE(has(a.kernels[3].why, "another tool's external correlation id (kind 0) and none of trainrr's"))
      << a.kernels[3].why;
  EXPECT_TRUE(has(a.kernels[4].why, "op index 40 of step 2, which is not in the op site table (3 ops)"))
      << a.kernels[4].why;
  EXPECT_TRUE(has(a.kernels[5].why, "carries 2 of trainrr's external ids (2097152, 3145729): which op launched it "
                                    "is ambiguous"))
      << a.kernels[5].why;
}

TEST(Attributor, ClearForgetsOneFlushBeforeTheNext) {
  Attributor at(kSites);
  at.add(tagged(1, 0, 0));
  at.add(kernel(1, "k", 1, 2));
  at.add_dropped(3);
  at.clear();
  at.add(kernel(1, "late", 5, 6));  // its correlation was in the flush cleared
  const Attribution a = at.join();
  EXPECT_EQ(a.seen, 1u);
  EXPECT_EQ(a.attributed, 0u);
  EXPECT_EQ(a.dropped, 0u);
  EXPECT_EQ(at.op_sites(), kSites);
}

TEST(Attributor, AStepsTraceRecordHoldsItsKernelsAndTheUnattributedAtEachLevel) {
  Attributor at(kSites);
  at.add(tagged(1, 4, 0));
  at.add(kernel(1, "gemm", 100, 300, 8));
  at.add(tagged(2, 4, 1));
  at.add(kernel(2, "bias", 400, 450));
  at.add(tagged(3, 5, 0));  // the next step's first launch, delivered in the same flush
  at.add(kernel(3, "gemm", 500, 700, 8));
  at.add(kernel(9, "stray", 350, 360));
  at.add_dropped(2);
  const Attribution a = at.join();

  trace::StepKernels op = step_kernels(a, 4, ProbeLevel::op, /*charged=*/true);
  EXPECT_EQ(trace::check_step_kernels(op, ProbeLevel::op), "");
  EXPECT_EQ(op.count, 3u);
  EXPECT_EQ(op.unattributed, 1u);
  EXPECT_EQ(op.dropped, 2u);
  ASSERT_EQ(op.launches.size(), 3u);
  EXPECT_EQ(op.launches[0], (trace::KernelLaunch{"dense_1/matmul.fwd", "gemm", 8, 1, 1, 128, 1, 1, 0, 0, 200}));
  EXPECT_EQ(op.launches[1].site, trace::kUnattributedSite);
  EXPECT_EQ(op.launches[1].name, "stray");
  EXPECT_EQ(op.launches[2].site, "dense_1/bias_add.fwd");
  EXPECT_EQ(op.digest, trace::kernel_sequence_digest(op.launches));

  trace::StepKernels step = step_kernels(a, 4, ProbeLevel::step, true);
  EXPECT_EQ(trace::check_step_kernels(step, ProbeLevel::step), "");
  EXPECT_TRUE(step.launches.empty());
  EXPECT_EQ(step.count, 3u);
  EXPECT_EQ(step.digest, op.digest);
  EXPECT_EQ(step.unattributed, 1u);

  // The next step's record from the same flush: its own kernel, not the stray one or the dropped count again.
  trace::StepKernels next = step_kernels(a, 5, ProbeLevel::op, false);
  EXPECT_EQ(trace::check_step_kernels(next, ProbeLevel::op), "");
  EXPECT_EQ(next.count, 1u);
  EXPECT_EQ(next.unattributed, 0u);
  EXPECT_EQ(next.dropped, 0u);
  ASSERT_EQ(next.launches.size(), 1u);
  EXPECT_EQ(next.launches[0].site, "dense_1/matmul.fwd");
}

}  // namespace
}  // namespace trainrr
