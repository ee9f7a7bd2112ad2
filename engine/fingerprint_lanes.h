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

// Internal linkage on purpose (an unnamed namespace in a header): each translation unit that includes this
// gets its own copy, compiled for its own instruction set. Ordinary inline functions would be merged across
// them by the linker, and the AVX2 copy could end up called on a CPU without AVX2.
namespace {

// Sums in sixteen float lanes within blocks of 512 values (wide vectors, no conversions in the loop), each
// block's lane sums added into double totals in a fixed order. Feeding it in pieces whose sizes are
// multiples of kBlock gives the same bits as feeding it all at once.
class SummaryLanes {
 public:
  static constexpr int kLanes = 16;
  static constexpr size_t kBlock = 512;

  SummaryLanes() {
    for (int l = 0; l < kLanes; ++l) lo_[l] = std::numeric_limits<float>::infinity(), hi_[l] = -lo_[l];
  }

  void add(const float* x, size_t n) {
    count_ += n;
    for (size_t start = 0; start < n; start += kBlock) block(x + start, std::min(kBlock, n - start));
  }

  Summary finish() const {
    Summary s;
    s.count = count_;
    s.sum = total_;
    s.sum_sq = total_sq_;
    s.min = std::numeric_limits<float>::infinity();
    s.max = -s.min;
    for (int l = 0; l < kLanes; ++l) {
      s.min = std::min(s.min, lo_[l]);
      s.max = std::max(s.max, hi_[l]);
      s.non_finite += non_finite_[l];
    }
    if (s.count == s.non_finite) s.min = s.max = 0;
    return s;
  }

 private:
  void block(const float* x, size_t n) {
    float sum[kLanes] = {}, sq[kLanes] = {}, blo[kLanes], bhi[kLanes];
    for (int l = 0; l < kLanes; ++l) blo[l] = lo_[l], bhi[l] = hi_[l];
    // Fast path: no masks, so the loop is plain vector adds, multiplies, mins and maxes. A non-finite
    // value makes a lane's sum or sum of squares non-finite, and then the block is summed again with
    // masks (the same operations on every finite value, so both paths agree bit for bit).
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float v = x[i + l];
        sum[l] += v;
        sq[l] += v * v;
        blo[l] = v < blo[l] ? v : blo[l];
        bhi[l] = v > bhi[l] ? v : bhi[l];
      }
    for (int l = 0; i < n; ++i, ++l) {
      const float v = x[i];
      sum[l] += v;
      sq[l] += v * v;
      blo[l] = v < blo[l] ? v : blo[l];
      bhi[l] = v > bhi[l] ? v : bhi[l];
    }
    bool clean = true;
    for (int l = 0; l < kLanes; ++l) clean = clean && finite(sum[l]) && finite(sq[l]);
    if (!clean) {
      for (int l = 0; l < kLanes; ++l) sum[l] = sq[l] = 0, blo[l] = lo_[l], bhi[l] = hi_[l];
      auto add = [&](int l, float v) {
        const bool f = finite(v);
        const float w = f ? v : 0.0f;
        sum[l] += w;
        sq[l] += w * w;
        blo[l] = f && v < blo[l] ? v : blo[l];
        bhi[l] = f && v > bhi[l] ? v : bhi[l];
        non_finite_[l] += !f;
      };
      i = 0;
      for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) add(l, x[i + l]);
      for (int l = 0; i < n; ++i, ++l) add(l, x[i]);
    }
    for (int l = 0; l < kLanes; ++l) {
      total_ += sum[l];
      total_sq_ += sq[l];
      lo_[l] = blo[l];
      hi_[l] = bhi[l];
    }
  }

  static bool finite(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return (bits & 0x7f800000u) != 0x7f800000u;
  }

  double total_ = 0, total_sq_ = 0;
  float lo_[kLanes], hi_[kLanes];
  uint32_t non_finite_[kLanes] = {};
  size_t count_ = 0;
};

Summary summarize_lanes(const float* x, size_t n) {
  SummaryLanes s;
  s.add(x, n);
  return s.finish();
}

}  // namespace

}  // namespace trainrr
