// XXH3-64 and the tensor summary compiled for AVX-512 (F and BW), called only where the CPU has both
// (fingerprint.cc checks). Same results as the other builds: XXH3 defines its digest, and the summary's
// sixteen float lanes are one 512-bit register here, doing the same operations in the same order.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "engine/fingerprint_lanes.h"

namespace trainrr {

uint64_t xxh3_64_avx512(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

Summary summarize_avx512(const float* x, size_t n) { return summarize_lanes(x, n); }

}  // namespace trainrr
