#include "engine/fingerprint.h"
#include "engine/fingerprint_lanes.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace trainrr {

#if defined(__x86_64__)
uint64_t xxh3_64_avx2(const void* data, size_t bytes);    // fingerprint_avx2.cc
Summary summarize_avx2(const float* x, size_t n);         // fingerprint_avx2.cc
uint64_t xxh3_64_avx512(const void* data, size_t bytes);  // fingerprint_avx512.cc
Summary summarize_avx512(const float* x, size_t n);       // fingerprint_avx512.cc
#endif

namespace {

using HashFn = uint64_t (*)(const void*, size_t);

uint64_t xxh3_64_baseline(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

bool has_avx512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

HashFn pick_hash() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (has_avx512()) return xxh3_64_avx512;
  if (__builtin_cpu_supports("avx2")) return xxh3_64_avx2;
#endif
  return xxh3_64_baseline;
}

const HashFn kHash = pick_hash();

using SummaryFn = Summary (*)(const float*, size_t);

Summary summarize_baseline(const float* x, size_t n) { return summarize_lanes(x, n); }

SummaryFn pick_summary() {
#if defined(__x86_64__)
  if (has_avx512()) return summarize_avx512;
  if (__builtin_cpu_supports("avx2")) return summarize_avx2;
#endif
  return summarize_baseline;
}

const SummaryFn kSummarize = pick_summary();

}  // namespace

uint64_t digest_bytes(const void* data, size_t bytes) { return kHash(data, bytes); }

uint64_t digest(std::span<const float> values) { return kHash(values.data(), values.size_bytes()); }

uint64_t digest(std::span<const uint32_t> values) { return kHash(values.data(), values.size_bytes()); }

Summary summarize(std::span<const float> values) { return kSummarize(values.data(), values.size()); }

// Two passes (digest, then summary) measured faster than one pass of streaming XXH3 interleaved with the
// summary, even for tensors that fit in cache.
Fingerprint fingerprint(std::span<const float> values) { return {digest(values), summarize(values)}; }

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
