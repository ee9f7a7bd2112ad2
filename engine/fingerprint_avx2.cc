// XXH3-64 and the tensor summary compiled for AVX2, called only where the CPU has it (fingerprint.cc
// checks). Both give the same result on every path: XXH3 defines its digest, and the summary performs the
// same operations in the same order. Debian's libxxhash is built for SSE2, which makes hashing every
// parameter each step cost more than the step budget allows.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "engine/fingerprint_lanes.h"

namespace trainrr {

uint64_t xxh3_64_avx2(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

Summary summarize_avx2(const float* x, size_t n) { return summarize_lanes(x, n); }

}  // namespace trainrr
