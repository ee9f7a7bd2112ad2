// XXH3-64 compiled for AVX2, called only where the CPU has it (fingerprint.cc checks). The digest is the
// same on every path: XXH3 defines its result, the instruction set only its speed. Debian's libxxhash is
// built for SSE2, which makes hashing every parameter each step cost more than the step budget allows.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

namespace trainrr {

uint64_t xxh3_64_avx2(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

}  // namespace trainrr
