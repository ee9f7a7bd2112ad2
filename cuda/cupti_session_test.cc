// The CUPTI session the recorder gathers a GPU run's kernels with. Without a driver CUPTI refuses to enable its
// activity kinds, and the session says so; on a GPU a kernel launched while an external id is pushed comes back
// attributed to that id's step and op.

#include "cuda/cupti_session.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>

#include "cuda/cupti_records.h"
#include "cuda/gpu_test_util.h"
#include "cuda/ops.h"
#include "recorder/kernel_attribution.h"

namespace trainrr {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A session that started, or the reason the test skips: another profiler holding CUPTI is not this code's fault.
#define TRAINRR_START_OR_SKIP(session)                                                                 \
  do {                                                                                                 \
    Status started_ = (session)->start();                                                              \
    if (!started_ && has(started_.error().message, "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED")) \
      GTEST_SKIP() << started_.error().message;                                                        \
    ASSERT_TRUE(started_.ok()) << started_.error().message;                                            \
  } while (0)

TEST(CuptiSession, WithoutADriverStartSaysWhyKernelsCannotBeRecorded) {
  if (cuda::find_gpu(0)) GTEST_SKIP() << "a GPU is here: the session starts (CuptiSession.AKernelLaunched...)";
  if (!cuda::Cupti::load()) GTEST_SKIP() << cuda::Cupti::load().error().message;
  auto session = cuda::open_cupti_session();
  Status s = session->start();
  ASSERT_FALSE(s.ok());
  // GPU.md 8: without a driver cuptiActivityEnable returns CUPTI_ERROR_UNKNOWN.
  EXPECT_TRUE(has(s.error().message, "CUPTI_ERROR_")) << s.error().message;
  EXPECT_TRUE(has(s.error().message, "cuptiActivityEnable of CONCURRENT_KERNEL")) << s.error().message;
  // Refused, it holds nothing: another session may try again.
  Status again = cuda::open_cupti_session()->start();
  ASSERT_FALSE(again.ok());
  EXPECT_FALSE(has(again.error().message, "another recording")) << again.error().message;
}

// Device memory for `n` floats, zeroed.
float* device_floats(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) return nullptr;
  cudaMemset(p, 0, n * sizeof(float));
  return static_cast<float*>(p);
}

TEST(CuptiSession, AKernelLaunchedInsideAPushIsAttributedToItsStepAndOp) {
  TRAINRR_REQUIRE_GPU();
  float* y = device_floats(64 * 32);
  float* bias = device_floats(32);
  ASSERT_TRUE(y && bias);
  auto session = cuda::open_cupti_session();
  TRAINRR_START_OR_SKIP(session);

  const uint64_t id = external_id(3, 1).value();
  session->push(id);
  ASSERT_TRUE(cuda::add_bias(y, bias, 64, 32, nullptr).ok());
  session->pop();
  ASSERT_TRUE(cuda::add_bias(y, bias, 64, 32, nullptr).ok());  // outside every op
  KernelRecords records = session->flush();
  session->stop();
  cudaFree(y);
  cudaFree(bias);

  Attributor attributor({"dense_1/matmul.fwd", "dense_1/bias.fwd"});
  for (KernelRecord& k : records.kernels) attributor.add(std::move(k));
  for (const ExternalCorrelationRecord& e : records.external) attributor.add(e);
  for (const ApiRecord& a : records.api) attributor.add(a);
  attributor.add_dropped(records.dropped);
  const Attribution a = attributor.join();
  ASSERT_EQ(a.seen, 2u) << "two launches, two kernel records";
  EXPECT_EQ(a.dropped, 0u);
  ASSERT_EQ(a.attributed, 1u);
  const AttributedKernel& inside = a.kernels[0];
  ASSERT_TRUE(inside.at.has_value()) << inside.why;
  EXPECT_EQ(*inside.at, (StepOp{3, 1}));
  EXPECT_EQ(inside.site, "dense_1/bias.fwd");
  EXPECT_TRUE(has(inside.kernel.name, "bias")) << inside.kernel.name;
  EXPECT_GE(inside.kernel.grid_x, 1u);
  EXPECT_GE(inside.kernel.block_x, 1u);
  EXPECT_GT(inside.kernel.end_ns, inside.kernel.start_ns);
  ASSERT_TRUE(inside.api.has_value()) << "RUNTIME or DRIVER records are enabled";
  const AttributedKernel& outside = a.kernels[1];
  EXPECT_FALSE(outside.at.has_value());
  EXPECT_EQ(outside.site, trace::kUnattributedSite);
  EXPECT_EQ(outside.kernel.name, inside.kernel.name);
}

TEST(CuptiSession, OneSessionGathersAtATime) {
  TRAINRR_REQUIRE_GPU();
  auto first = cuda::open_cupti_session();
  TRAINRR_START_OR_SKIP(first);
  Status second = cuda::open_cupti_session()->start();
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(has(second.error().message, "another recording in this process")) << second.error().message;
  first->stop();
  auto third = cuda::open_cupti_session();
  Status s = third->start();
  EXPECT_TRUE(s.ok()) << s.error().message;
  // Nothing was launched: a flush hands over no kernels.
  EXPECT_TRUE(third->flush().kernels.empty());
  third->stop();
}

}  // namespace
}  // namespace trainrr
