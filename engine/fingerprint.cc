#include "engine/fingerprint.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace trainrr {

uint64_t digest_bytes(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

uint64_t digest(std::span<const float> values) { return XXH3_64bits(values.data(), values.size_bytes()); }

uint64_t digest(std::span<const uint32_t> values) {
  return XXH3_64bits(values.data(), values.size_bytes());
}

Summary summarize(std::span<const float> values) {
  Summary s;
  s.count = values.size();
  s.min = std::numeric_limits<float>::infinity();
  s.max = -std::numeric_limits<float>::infinity();
  for (float v : values) {
    if (!std::isfinite(v)) {
      ++s.non_finite;
      continue;
    }
    s.sum += v;
    s.sum_sq += static_cast<double>(v) * v;
    if (v < s.min) s.min = v;
    if (v > s.max) s.max = v;
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
