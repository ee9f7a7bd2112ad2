#include "engine/data/split.h"

#include <cmath>
#include <map>
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
    // Only the classes present: labels may be sparse (0 and 16000000), and num_classes their bound.
    std::map<int64_t, int64_t> quota;
    for (float v : labels) {
      const auto c = static_cast<int64_t>(v);
      TRAINRR_CHECK(c >= 0 && c < num_classes && static_cast<float>(c) == v, "label " + std::to_string(v));
      ++quota[c];
    }
    // Each class gets the floor of its share; the rows left over go to the classes with the largest
    // remainders (ties to the smaller class index), so the test set has exactly n_test rows, as
    // scikit-learn's stratified split allocates them.
    std::map<int64_t, double> remainder;
    int64_t given = 0;
    for (auto& [c, q] : quota) {
      const double share = static_cast<double>(n_test) * static_cast<double>(q) / static_cast<double>(n);
      const auto whole = static_cast<int64_t>(std::floor(share));
      remainder[c] = share - static_cast<double>(whole);
      q = whole;
      given += whole;
    }
    for (; given < n_test; ++given) {
      auto best = remainder.begin();
      for (auto it = remainder.begin(); it != remainder.end(); ++it)
        if (it->second > best->second) best = it;
      ++quota[best->first];
      best->second = -1;
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
