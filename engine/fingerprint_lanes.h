#pragma once
// The summary loop, shared by the baseline and the AVX2 builds (fingerprint.cc, fingerprint_avx2.cc).
// Independent lanes combined in a fixed order: the loop vectorises, and every build gives the same
// bits (the same IEEE operations in the same order; no contraction into fused multiply-adds).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/fingerprint.h"

namespace trainrr {

// Internal linkage on purpose: each translation unit that includes this gets its own copy, compiled for
// its own instruction set. An ordinary inline function would be merged across them by the linker, and the
// AVX2 copy could end up called on a CPU without AVX2.
static inline Summary summarize_lanes(const float* x, size_t n) {
  // Sixteen float lanes within blocks of 512 values (wide vectors, no conversions in the loop), each
  // block's lane sums then added into double totals in a fixed order.
  constexpr int kLanes = 16;
  constexpr size_t kBlock = 512;
  double total = 0, total_sq = 0;
  float lo[kLanes], hi[kLanes];
  uint32_t non_finite[kLanes] = {};
  for (int l = 0; l < kLanes; ++l) lo[l] = std::numeric_limits<float>::infinity(), hi[l] = -lo[l];
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = std::min(n, start + kBlock);
    float sum[kLanes] = {}, sq[kLanes] = {}, blo[kLanes], bhi[kLanes];
    for (int l = 0; l < kLanes; ++l) blo[l] = lo[l], bhi[l] = hi[l];
    // Fast path: no masks, so the loop is plain vector adds, multiplies, mins and maxes. A non-finite
    // value makes a lane's sum or sum of squares non-finite, and then the block is summed again with
    // masks (the same operations on every finite value, so both paths agree bit for bit).
    size_t i = start;
    for (; i + kLanes <= end; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float v = x[i + l];
        sum[l] += v;
        sq[l] += v * v;
        blo[l] = v < blo[l] ? v : blo[l];
        bhi[l] = v > bhi[l] ? v : bhi[l];
      }
    for (int l = 0; i < end; ++i, ++l) {
      const float v = x[i];
      sum[l] += v;
      sq[l] += v * v;
      blo[l] = v < blo[l] ? v : blo[l];
      bhi[l] = v > bhi[l] ? v : bhi[l];
    }
    bool clean = true;
    for (int l = 0; l < kLanes; ++l) {
      uint32_t a, b;
      std::memcpy(&a, &sum[l], sizeof a);
      std::memcpy(&b, &sq[l], sizeof b);
      clean = clean && (a & 0x7f800000u) != 0x7f800000u && (b & 0x7f800000u) != 0x7f800000u;
    }
    if (!clean) {
      for (int l = 0; l < kLanes; ++l) sum[l] = sq[l] = 0, blo[l] = lo[l], bhi[l] = hi[l];
      auto add = [&](int l, float v) {
        uint32_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        const bool finite = (bits & 0x7f800000u) != 0x7f800000u;
        const float f = finite ? v : 0.0f;
        sum[l] += f;
        sq[l] += f * f;
        blo[l] = finite && v < blo[l] ? v : blo[l];
        bhi[l] = finite && v > bhi[l] ? v : bhi[l];
        non_finite[l] += !finite;
      };
      i = start;
      for (; i + kLanes <= end; i += kLanes)
        for (int l = 0; l < kLanes; ++l) add(l, x[i + l]);
      for (int l = 0; i < end; ++i, ++l) add(l, x[i]);
    }
    for (int l = 0; l < kLanes; ++l) {
      total += sum[l];
      total_sq += sq[l];
      lo[l] = blo[l];
      hi[l] = bhi[l];
    }
  }
  Summary s;
  s.count = n;
  s.sum = total;
  s.sum_sq = total_sq;
  s.min = std::numeric_limits<float>::infinity();
  s.max = -s.min;
  for (int l = 0; l < kLanes; ++l) {
    s.min = std::min(s.min, lo[l]);
    s.max = std::max(s.max, hi[l]);
    s.non_finite += non_finite[l];
  }
  if (s.count == s.non_finite) s.min = s.max = 0;
  return s;
}

}  // namespace trainrr
