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
  // As scikit-learn's train_test_split: the test set has ceil(fraction * rows) rows.
  const auto n_test = static_cast<int64_t>(std::ceil(test_fraction * n - 1e-9));
  if (!stratify) {
    s.test.assign(perm.begin(), perm.begin() + n_test);
    s.train.assign(perm.begin() + n_test, perm.end());
  } else {
    std::vector<int64_t> quota(num_classes, 0);
    for (float v : labels) {
      const auto c = static_cast<int64_t>(v);
      TRAINRR_CHECK(c >= 0 && c < num_classes && static_cast<float>(c) == v, "label " + std::to_string(v));
      ++quota[c];
    }
    // Each class gets the floor of its share; the rows left over go to the classes with the largest
    // remainders (ties to the smaller class index), so the test set has exactly n_test rows, as
    // scikit-learn's stratified split allocates them.
    std::vector<double> remainder(num_classes);
    int64_t given = 0;
    for (int c = 0; c < num_classes; ++c) {
      const double share = static_cast<double>(n_test) * static_cast<double>(quota[c]) / static_cast<double>(n);
      const auto whole = static_cast<int64_t>(std::floor(share));
      remainder[c] = share - static_cast<double>(whole);
      quota[c] = whole;
      given += whole;
    }
    for (; given < n_test; ++given) {
      int best = 0;
      for (int c = 1; c < num_classes; ++c)
        if (remainder[c] > remainder[best]) best = c;
      ++quota[best];
      remainder[best] = -1;
    }
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
