#pragma once
// A tensor's fingerprint: an XXH3-64 digest of its bytes (bit-exact equality) and a numeric summary
// (how big a difference is when digests differ).

#include <cstdint>
#include <span>

#include "engine/tensor.h"

namespace trainrr {

struct Summary {
  uint64_t count = 0;
  double sum = 0;
  double sum_sq = 0;
  float min = 0;
  float max = 0;
  uint64_t non_finite = 0;
};

// Whether a summary covers no value: every value is NaN or infinite (sum, min and max are then 0, standing
// for nothing), or there is none.
inline bool no_finite_value(const Summary& s) { return s.non_finite == s.count; }

struct Fingerprint {
  uint64_t digest = 0;
  Summary summary;
};

uint64_t digest_bytes(const void* data, size_t bytes);
uint64_t digest(std::span<const float> values);
uint64_t digest(std::span<const uint32_t> values);
inline uint64_t digest(const Tensor& t) { return digest(std::span<const float>(t.data)); }
Summary summarize(std::span<const float> values);
Fingerprint fingerprint(std::span<const float> values);
inline Fingerprint fingerprint(const Tensor& t) { return fingerprint(std::span<const float>(t.data)); }

// Distance in units in the last place between two floats (0 when bit-identical; counts across zero).
uint64_t ulp_distance(float a, float b);

}  // namespace trainrr
