#include "engine/device.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

TEST(Device, ParsesCpuCudaAndCudaN) {
  EXPECT_TRUE(parse_device("cpu")->is_cpu());
  EXPECT_EQ(parse_device("cuda")->str(), "cuda:0");
  EXPECT_EQ(parse_device("cuda:3")->index, 3);
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:1x", "CUDA", "cuda:99999999999"}) {
    auto d = parse_device(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_NE(d.error().message.find("cpu, cuda or cuda:N"), std::string::npos) << d.error().message;
  }
}

Result<GpuFound> no_driver(int) { return Error{"no CUDA driver on this machine"}; }
Result<GpuFound> one_gpu(int) { return GpuFound{"Some GPU (compute capability 9.0)"}; }

TEST(Device, TheCpuIsAlwaysUsableAndAGpuNeedsTheBackendAndADevice) {
  set_cuda_probe(nullptr);
  EXPECT_TRUE(usable_device(DeviceSpec{}));
  Status none = usable_device(parse_device("cuda").value());
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("built without the CUDA backend"), std::string::npos);
  set_cuda_probe(&no_driver);
  Status driverless = usable_device(parse_device("cuda").value());
  ASSERT_FALSE(driverless);
  EXPECT_NE(driverless.error().message.find("no CUDA driver"), std::string::npos);
  // Found, but no op of the engine runs there: said, with what was found.
  set_cuda_probe(&one_gpu);
  Status found = usable_device(parse_device("cuda").value());
  ASSERT_FALSE(found);
  EXPECT_NE(found.error().message.find("Some GPU"), std::string::npos);
  set_cuda_probe(nullptr);
}

}  // namespace
}  // namespace trainrr
