// The GPU's draws against the CPU streams', bit for bit (a GPU machine runs these; elsewhere they skip).

#include "cuda/rng_kernels.h"

#include <gtest/gtest.h>

#include <bit>
#include <vector>

#include "cuda/gpu_test_util.h"
#include "engine/random.h"

namespace trainrr {
namespace {

TEST(GpuPhilox, UniformDrawsAreTheCpuStreamsBitForBit) {
  TRAINRR_REQUIRE_GPU();
  for (float lo : {0.0f, -0.05f}) {
    const float hi = lo == 0.0f ? 1.0f : 0.05f;
    RngStreams streams(1234, null_hooks());
    std::vector<float> skip(5), cpu(100003);
    streams.uniform("s", "dropout/d", skip, lo, hi);  // start mid-block
    streams.uniform("s", "dropout/d", cpu, lo, hi);
    std::vector<float> gpu(cpu.size());
    Status s = cuda::uniform_on_gpu(stream_key(1234, "dropout/d"), skip.size(), lo, hi, gpu);
    ASSERT_TRUE(s) << s.error().message;
    size_t mismatches = 0;
    for (size_t i = 0; i < cpu.size(); ++i) mismatches += std::bit_cast<uint32_t>(cpu[i]) != std::bit_cast<uint32_t>(gpu[i]);
    EXPECT_EQ(mismatches, 0u) << "of " << cpu.size();
  }
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
  EXPECT_NE(missing.error().message.find("there is no GPU 1000"), std::string::npos) << missing.error().message;
}

}  // namespace
}  // namespace trainrr
