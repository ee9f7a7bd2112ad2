#pragma once
// The arithmetic of a random draw that the CPU engine and the CUDA kernels share, word by word: which Philox
// word a position of a stream is, and how words become floats. Compiled by the host compiler and by nvcc
// (where the functions are __host__ __device__), so a GPU run draws the same bits as a CPU run of the same
// seed: the Philox rounds are integer-exact (Random123 under nvcc), and every float operation here is one
// rounded step, written with __fmul_rn/__fadd_rn on the device so that nvcc never fuses a multiply and an
// add (the host side is compiled with -ffp-contract=off).

#include <Random123/philox.h>

#include <cstdint>

#if defined(__CUDACC__)
#define TRAINRR_HD __host__ __device__
#else
#define TRAINRR_HD
#endif

namespace trainrr::rng {

// Word `position` of the stream with `key`: element position % 4 of the Philox4x32-10 block whose 128-bit
// counter is {lo(position / 4), hi(position / 4), 0, 0}, keyed {lo(key), hi(key)}.
TRAINRR_HD inline uint32_t stream_word(uint64_t key, uint64_t position) {
  r123::Philox4x32_R<10> philox;
  const uint64_t block = position >> 2;
  r123::Philox4x32_R<10>::ctr_type c = {{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  r123::Philox4x32_R<10>::key_type k = {{static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)}};
  return philox(c, k)[static_cast<unsigned>(position & 3)];
}

// A uniform float in [0, 1) from the top 24 bits of a word: exact (an integer below 2^24 times a power of two).
TRAINRR_HD inline float uniform01(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

// lo + (hi - lo) * u, each operation rounded on its own.
TRAINRR_HD inline float uniform_between(uint32_t w, float lo, float hi) {
  const float u = uniform01(w);
#if defined(__CUDA_ARCH__)
  return __fadd_rn(lo, __fmul_rn(__fsub_rn(hi, lo), u));
#else
  const float width = hi - lo;
  const float scaled = width * u;
  return lo + scaled;
#endif
}

// Dropout keeps an element whose uniform draw in [0, 1) is at least the rate (tf.nn.dropout's rule).
TRAINRR_HD inline bool dropout_keeps(float u, float rate) { return u >= rate; }

// A kept element is multiplied by the reciprocal of the keep probability; a dropped one is 0 (so a dropped
// inf gives 0, not NaN).
TRAINRR_HD inline float dropout_apply(bool keep, float x, float scale) {
#if defined(__CUDA_ARCH__)
  return keep ? __fmul_rn(x, scale) : 0.0f;
#else
  return keep ? x * scale : 0.0f;
#endif
}

}  // namespace trainrr::rng
