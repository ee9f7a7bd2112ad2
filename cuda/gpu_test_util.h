#pragma once
// GPU tests skip, saying why, where the CUDA runtime finds no device (CI, a machine without a driver).

#include <gtest/gtest.h>

#include "cuda/device.h"

#define TRAINRR_REQUIRE_GPU()                                               \
  do {                                                                      \
    auto gpu_ = ::trainrr::cuda::find_gpu(0);                               \
    if (!gpu_) GTEST_SKIP() << "no GPU here: " << gpu_.error().message;     \
  } while (0)
