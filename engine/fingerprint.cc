#include "engine/fingerprint.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace trainrr {

#if defined(__x86_64__)
uint64_t xxh3_64_avx2(const void* data, size_t bytes);  // digest_avx2.cc
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

}  // namespace

uint64_t digest_bytes(const void* data, size_t bytes) { return kHash(data, bytes); }

uint64_t digest(std::span<const float> values) { return kHash(values.data(), values.size_bytes()); }

uint64_t digest(std::span<const uint32_t> values) { return kHash(values.data(), values.size_bytes()); }

Summary summarize(std::span<const float> values) {
  // Eight independent lanes, combined in a fixed order: the loop vectorises, and the result is the same
  // on every machine (no lane depends on threads or on the instruction set).
  constexpr int kLanes = 8;
  double sum[kLanes] = {}, sq[kLanes] = {};
  float lo[kLanes], hi[kLanes];
  uint32_t non_finite[kLanes] = {};
  for (int l = 0; l < kLanes; ++l) lo[l] = std::numeric_limits<float>::infinity(), hi[l] = -lo[l];
  const float* x = values.data();
  const size_t n = values.size();
  auto add = [&](int l, float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    const bool finite = (bits & 0x7f800000u) != 0x7f800000u;
    const double d = finite ? v : 0.0;
    sum[l] += d;
    sq[l] += d * d;
    lo[l] = finite && v < lo[l] ? v : lo[l];
    hi[l] = finite && v > hi[l] ? v : hi[l];
    non_finite[l] += !finite;
  };
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) add(l, x[i + l]);
  for (int l = 0; i < n; ++i, ++l) add(l, x[i]);
  Summary s;
  s.count = n;
  s.min = std::numeric_limits<float>::infinity();
  s.max = -s.min;
  for (int l = 0; l < kLanes; ++l) {
    s.sum += sum[l];
    s.sum_sq += sq[l];
    s.min = std::min(s.min, lo[l]);
    s.max = std::max(s.max, hi[l]);
    s.non_finite += non_finite[l];
  }
  if (s.count == s.non_finite) s.min = s.max = 0;
  return s;
}

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
