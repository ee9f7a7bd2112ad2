#include "engine/fingerprint.h"

#include <cstring>

#include "engine/fingerprint_lanes.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <limits>

namespace trainrr {
namespace {

TEST(Fingerprint, DigestSeesOneBit) {
  std::vector<float> a = {1, 2, 3}, b = a;
  b[1] = std::nextafter(2.0f, 3.0f);
  EXPECT_NE(digest(a), digest(b));
  EXPECT_EQ(digest(a), digest(std::vector<float>{1, 2, 3}));
}

TEST(Fingerprint, DigestIsXxh3WhicheverInstructionSetComputesIt) {
  std::vector<uint8_t> bytes(100003);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  for (size_t n : {0, 1, 3, 16, 17, 128, 129, 240, 241, 1024, 4097, 100003})
    EXPECT_EQ(digest_bytes(bytes.data(), n), XXH3_64bits(bytes.data(), n)) << n << " bytes";
}

TEST(Fingerprint, SummaryIsTheSameBitsWhicheverInstructionSetComputesIt) {
  std::vector<float> v(1003);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<float>(i)) * 1e3f / static_cast<float>(i + 1);
  v[5] = std::numeric_limits<float>::quiet_NaN();
  v[700] = -std::numeric_limits<float>::infinity();
  for (size_t n : {0, 1, 7, 8, 9, 1003}) {
    const Summary a = summarize(std::span<const float>(v.data(), n));
    const Summary b = summarize_lanes(v.data(), n);  // compiled for the baseline instruction set
    EXPECT_EQ(std::memcmp(&a.sum, &b.sum, sizeof a.sum), 0) << n;
    EXPECT_EQ(std::memcmp(&a.sum_sq, &b.sum_sq, sizeof a.sum_sq), 0) << n;
    EXPECT_EQ(a.min, b.min);
    EXPECT_EQ(a.max, b.max);
    EXPECT_EQ(a.non_finite, b.non_finite);
  }
}

TEST(Fingerprint, FingerprintIsTheDigestAndTheSummary) {
  std::vector<float> v(70001);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(static_cast<float>(i) * 0.37f) * static_cast<float>(i % 113);
  v[40000] = std::numeric_limits<float>::infinity();
  for (size_t n : {0, 5, 512, 4096, 4097, 70001}) {
    std::span<const float> part(v.data(), n);
    const Fingerprint f = fingerprint(part);
    EXPECT_EQ(f.digest, XXH3_64bits(part.data(), part.size_bytes())) << n;
    const Summary s = summarize_lanes(part.data(), n);
    EXPECT_EQ(std::memcmp(&f.summary.sum, &s.sum, sizeof s.sum), 0) << n;
    EXPECT_EQ(std::memcmp(&f.summary.sum_sq, &s.sum_sq, sizeof s.sum_sq), 0) << n;
    EXPECT_EQ(f.summary.min, s.min);
    EXPECT_EQ(f.summary.max, s.max);
    EXPECT_EQ(f.summary.non_finite, s.non_finite);
    EXPECT_EQ(f.summary.count, n);
  }
}

TEST(Fingerprint, SummaryCountsNonFinite) {
  std::vector<float> v = {1, -2, std::numeric_limits<float>::quiet_NaN(), 4, std::numeric_limits<float>::infinity()};
  Summary s = summarize(v);
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(s.non_finite, 2u);
  EXPECT_DOUBLE_EQ(s.sum, 3);
  EXPECT_DOUBLE_EQ(s.sum_sq, 21);
  EXPECT_EQ(s.min, -2);
  EXPECT_EQ(s.max, 4);
}

TEST(Fingerprint, UlpDistance) {
  EXPECT_EQ(ulp_distance(1.0f, 1.0f), 0u);
  EXPECT_EQ(ulp_distance(1.0f, std::nextafter(1.0f, 2.0f)), 1u);
  float x = 1.0f;
  for (int i = 0; i < 3; ++i) x = std::nextafter(x, 0.0f);
  EXPECT_EQ(ulp_distance(1.0f, x), 3u);
  // Across zero: the smallest positive and negative denormals are two steps apart.
  const float tiny = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(ulp_distance(tiny, -tiny), 2u);
  EXPECT_EQ(ulp_distance(0.0f, -0.0f), 0u);
}

}  // namespace
}  // namespace trainrr
