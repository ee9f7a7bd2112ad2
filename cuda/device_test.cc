// What the CUDA backend says on the machine it runs on: a device, or why there is none.

#include "cuda/device.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "cuda/blaslt.h"
#include "cuda/gpu_test_util.h"

namespace trainrr {
namespace {

TEST(CudaProbe, WithoutADriverTheProbeSaysSoAndNamesTheRuntime) {
  int driver = 0;
  cudaDriverGetVersion(&driver);
  if (driver != 0) GTEST_SKIP() << "this machine has a CUDA driver";
  auto g = cuda::find_gpu(0);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("no CUDA driver on this machine"), std::string::npos) << g.error().message;
  EXPECT_NE(g.error().message.find("13."), std::string::npos) << g.error().message;
  // Through the engine: the setting, then the reason.
  set_cuda_probe(&cuda::probe_gpu);
  Status s = usable_device(parse_device("cuda:1").value());
  set_cuda_probe(nullptr);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("no CUDA driver"), std::string::npos) << s.error().message;
}

TEST(CudaProbe, VersionsAreWrittenAsCudaWritesThem) {
  EXPECT_EQ(cuda::cuda_version_str(13000), "13.0");
  EXPECT_EQ(cuda::cuda_version_str(12080), "12.8");
  EXPECT_EQ(cuda::cuda_version_str(0), "0.0");
}

TEST(CudaBlasLt, LoadsWithoutAGpuAndReportsItsVersion) {
  // The library loads and says its version without a driver; creating a handle needs a GPU.
  auto lt = cuda::BlasLt::load();
  if (!lt) GTEST_SKIP() << lt.error().message;
  EXPECT_GE((*lt)->version(), 130000u);
  EXPECT_EQ(cuda::BlasLt::load().value(), *lt);  // one copy per process
}

TEST(GpuDevice, FindsTheGpuAndDescribesIt) {
  TRAINRR_REQUIRE_GPU();
  auto g = cuda::find_gpu(0);
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->name.empty());
  EXPECT_GE(g->cc_major, 7);
  EXPECT_GT(g->sm_count, 0);
  auto missing = cuda::find_gpu(1000);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("there is no GPU 1000"), std::string::npos)
      << missing.error().message;
}

}  // namespace
}  // namespace trainrr
