#pragma once
// Draws of the CPU's Philox streams made on the GPU (engine/counter_rng.h's arithmetic under nvcc).

#include <cstdint>
#include <span>

#include "engine/result.h"

namespace trainrr::cuda {

// Device arrays: out[i] = the stream's uniform in [lo, hi) at position offset + i. One thread per element.
Status uniform_on_device(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n, void* stream);
// Dropout on device arrays: keep[i] = the uniform at offset + i >= rate; y[i] = keep ? x[i] * scale : 0.
Status dropout_on_device(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                         uint8_t* keep, int64_t n, void* stream);

// The same draws copied back to the host (for tests and for the recorder's digests).
Status uniform_on_gpu(uint64_t key, uint64_t offset, float lo, float hi, std::span<float> out);

}  // namespace trainrr::cuda
