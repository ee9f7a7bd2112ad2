#include "engine/data/split.h"

#include <cmath>
#include <string>

#include "engine/result.h"

namespace trainrr {

SplitIndices split_rows(std::span<const float> labels, int num_classes, double test_fraction, bool stratify,
                        RngStreams& rng, Hooks& hooks) {
  TRAINRR_CHECK(test_fraction >= 0 && test_fraction < 1, "test_fraction " + std::to_string(test_fraction));
  TRAINRR_CHECK(labels.size() <= UINT32_MAX, "too many rows");
  TRAINRR_CHECK(!stratify || num_classes > 0, "stratify needs class labels");
  const auto n = static_cast<uint32_t>(labels.size());
  std::vector<uint32_t> perm;
  rng.permutation("data/split", "data/split", perm, n);

  SplitIndices s;
  if (!stratify) {
    const auto n_test = static_cast<size_t>(std::llround(test_fraction * n));
    s.test.assign(perm.begin(), perm.begin() + n_test);
    s.train.assign(perm.begin() + n_test, perm.end());
  } else {
    std::vector<int64_t> quota(num_classes, 0);
    for (float v : labels) {
      const auto c = static_cast<int64_t>(v);
      TRAINRR_CHECK(c >= 0 && c < num_classes && static_cast<float>(c) == v, "label " + std::to_string(v));
      ++quota[c];
    }
    for (int64_t& q : quota) q = std::llround(test_fraction * static_cast<double>(q));
    for (uint32_t row : perm) {
      int64_t& q = quota[static_cast<int64_t>(labels[row])];
      if (q > 0) {
        --q;
        s.test.push_back(row);
      } else {
        s.train.push_back(row);
      }
    }
  }
  hooks.split("data/split", s.train, s.test);
  return s;
}

}  // namespace trainrr
