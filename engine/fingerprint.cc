#include "engine/fingerprint.h"
#include "engine/fingerprint_lanes.h"

// The streaming state on the stack (its layout is that of the library this is built against).
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace trainrr {

#if defined(__x86_64__)
uint64_t xxh3_64_avx2(const void* data, size_t bytes);  // fingerprint_avx2.cc
Summary summarize_avx2(const float* x, size_t n);       // fingerprint_avx2.cc
Fingerprint fingerprint_avx2(const float* x, size_t n);  // fingerprint_avx2.cc
#endif

namespace {

using HashFn = uint64_t (*)(const void*, size_t);

uint64_t xxh3_64_baseline(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

HashFn pick_hash() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return xxh3_64_avx2;
#endif
  return xxh3_64_baseline;
}

const HashFn kHash = pick_hash();

using SummaryFn = Summary (*)(const float*, size_t);

Summary summarize_baseline(const float* x, size_t n) { return summarize_lanes(x, n); }

SummaryFn pick_summary() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return summarize_avx2;
#endif
  return summarize_baseline;
}

const SummaryFn kSummarize = pick_summary();

Fingerprint fingerprint_baseline(const float* x, size_t n) {
  XXH3_state_t state;
  return fingerprint_one_pass(
      x, n, &state, [](XXH3_state_t* s) { XXH3_64bits_reset(s); },
      [](XXH3_state_t* s, const void* p, size_t b) { XXH3_64bits_update(s, p, b); },
      [](XXH3_state_t* s) { return static_cast<uint64_t>(XXH3_64bits_digest(s)); });
}

using FingerprintFn = Fingerprint (*)(const float*, size_t);

FingerprintFn pick_fingerprint() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return fingerprint_avx2;
#endif
  return fingerprint_baseline;
}

const FingerprintFn kFingerprint = pick_fingerprint();

}  // namespace

uint64_t digest_bytes(const void* data, size_t bytes) { return kHash(data, bytes); }

uint64_t digest(std::span<const float> values) { return kHash(values.data(), values.size_bytes()); }

uint64_t digest(std::span<const uint32_t> values) { return kHash(values.data(), values.size_bytes()); }

Summary summarize(std::span<const float> values) { return kSummarize(values.data(), values.size()); }

Fingerprint fingerprint(std::span<const float> values) { return kFingerprint(values.data(), values.size()); }

uint64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    // Map the sign-magnitude float bits onto a monotonic integer line.
    return i < 0 ? static_cast<int64_t>(std::numeric_limits<int32_t>::min()) - i : static_cast<int64_t>(i);
  };
  int64_t d = ordered(a) - ordered(b);
  return static_cast<uint64_t>(d < 0 ? -d : d);
}

}  // namespace trainrr
