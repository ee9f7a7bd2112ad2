#pragma once
// CUDA's math_constants.h, the constants trainrr's kernels use, for the host build of the kernels
// (cuda/on_host/cuda_runtime.h): the same bits as CUDA's.

#include <bit>
#include <cstdint>

#define CUDART_NAN_F std::bit_cast<float>(uint32_t{0x7fffffffu})
