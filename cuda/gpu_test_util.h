#pragma once
// GPU tests skip, saying why, where the CUDA runtime finds no device (CI, a machine without a driver).

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "cuda/device.h"

#if defined(TRAINRR_HOST_KERNELS)
// Built against cuda/on_host/cuda_runtime.h, the kernels run on the CPU: nothing to require.
#define TRAINRR_REQUIRE_GPU() \
  do {                        \
  } while (0)
#else
#define TRAINRR_REQUIRE_GPU()                                               \
  do {                                                                      \
    auto gpu_ = ::trainrr::cuda::find_gpu(0);                               \
    if (!gpu_) GTEST_SKIP() << "no GPU here: " << gpu_.error().message;     \
  } while (0)
#endif

namespace trainrr::cuda_testing {

// Distance in units in the last place between a CPU and a device value: the number of floats between them (0: the
// same bits, or both NaN; +0 and -0 are 1 apart, since the CPU's and the device's zeros must carry the same sign
// too). Stricter than engine/fingerprint.h's ulp_distance, which puts both zeros at 0.
inline int64_t bit_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  auto ordered = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? -static_cast<int64_t>(i & 0x7fffffff) - 1 : static_cast<int64_t>(i);
  };
  return std::llabs(ordered(a) - ordered(b));
}

}  // namespace trainrr::cuda_testing
