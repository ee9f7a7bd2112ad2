#include "engine/data/split.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>

#include "engine/result.h"

namespace trainrr {
namespace {

// numpy's legacy RandomState as far as scikit-learn's splits use it: MT19937 seeded as RandomState(seed)
// seeds it (init_genrand, which std::mt19937 shares), and shuffles that draw each index by masked rejection
// (numpy's random_interval) from the last position down.
class LegacyRandomState {
 public:
  explicit LegacyRandomState(uint32_t seed) : mt_(seed) {}

  // RandomState.shuffle of a 1-d array.
  void shuffle(std::vector<uint32_t>& v) {
    for (size_t i = v.size(); i-- > 1;) std::swap(v[i], v[interval(static_cast<uint32_t>(i))]);
  }
  // RandomState.permutation(n).
  std::vector<uint32_t> permutation(size_t n) {
    std::vector<uint32_t> v(n);
    std::iota(v.begin(), v.end(), 0u);
    shuffle(v);
    return v;
  }

 private:
  // A uniform integer in [0, max].
  uint32_t interval(uint32_t max) {
    uint32_t mask = max;
    for (int s : {1, 2, 4, 8, 16}) mask |= mask >> s;
    uint32_t value;
    do value = static_cast<uint32_t>(mt_()) & mask;
    while (value > max);
    return value;
  }

  std::mt19937 mt_;
};

SplitIndices front_is_test(const std::vector<uint32_t>& perm, int64_t n_test) {
  SplitIndices s;
  s.test.assign(perm.begin(), perm.begin() + n_test);
  s.train.assign(perm.begin() + n_test, perm.end());
  return s;
}

// scikit-learn's _approximate_mode: how many of n_draws rows each class gives, the floor of its share and
// one more for the largest remainders; equal remainders are chosen among by RandomState.choice without
// replacement (the front of a permutation).
std::vector<int64_t> approximate_mode(const std::vector<int64_t>& counts, int64_t n_draws,
                                      LegacyRandomState& rng) {
  const double total = static_cast<double>(std::accumulate(counts.begin(), counts.end(), int64_t{0}));
  std::vector<int64_t> taken(counts.size());
  std::vector<double> remainder(counts.size());
  int64_t need = n_draws;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double share = static_cast<double>(counts[i]) / total * static_cast<double>(n_draws);
    taken[i] = static_cast<int64_t>(std::floor(share));
    remainder[i] = share - std::floor(share);
    need -= taken[i];
  }
  std::vector<double> values = remainder;
  std::sort(values.begin(), values.end(), std::greater<>());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  for (double value : values) {
    if (need <= 0) break;
    std::vector<size_t> tied;
    for (size_t i = 0; i < remainder.size(); ++i)
      if (remainder[i] == value) tied.push_back(i);
    const auto now = std::min<int64_t>(static_cast<int64_t>(tied.size()), need);
    const std::vector<uint32_t> order = rng.permutation(tied.size());
    for (int64_t k = 0; k < now; ++k) ++taken[tied[order[k]]];
    need -= now;
  }
  return taken;
}

SplitIndices sklearn_split(std::span<const float> labels, int64_t n_test, bool stratify, uint32_t seed) {
  const auto n = labels.size();
  LegacyRandomState rng(seed);
  if (!stratify) return front_is_test(rng.permutation(n), n_test);  // ShuffleSplit
  // StratifiedShuffleSplit: classes in label order, each one's rows in file order.
  std::map<float, std::vector<uint32_t>> rows_of;
  for (size_t r = 0; r < n; ++r) rows_of[labels[r]].push_back(static_cast<uint32_t>(r));
  std::vector<int64_t> counts;
  for (const auto& [label, rows] : rows_of) counts.push_back(static_cast<int64_t>(rows.size()));
  const std::vector<int64_t> train_of = approximate_mode(counts, static_cast<int64_t>(n) - n_test, rng);
  std::vector<int64_t> left(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) left[i] = counts[i] - train_of[i];
  const std::vector<int64_t> test_of = approximate_mode(left, n_test, rng);
  SplitIndices s;
  size_t i = 0;
  for (const auto& [label, rows] : rows_of) {
    const std::vector<uint32_t> perm = rng.permutation(rows.size());
    for (int64_t k = 0; k < train_of[i] + test_of[i]; ++k)
      (k < train_of[i] ? s.train : s.test).push_back(rows[perm[k]]);
    ++i;
  }
  rng.shuffle(s.train);
  rng.shuffle(s.test);
  return s;
}

SplitIndices philox_split(std::span<const float> labels, int64_t n_test, bool stratify, RngStreams& rng) {
  const auto n = static_cast<uint32_t>(labels.size());
  std::vector<uint32_t> perm;
  rng.permutation("data/split", "data/split", perm, n);
  if (!stratify) return front_is_test(perm, n_test);
  SplitIndices s;
  // Only the classes present: labels may be sparse (0 and 16000000), and num_classes their bound.
  std::map<int64_t, int64_t> quota;
  for (float v : labels) ++quota[static_cast<int64_t>(v)];
  // Each class gets the floor of its share; the rows left over go to the classes with the largest
  // remainders (ties to the smaller class index), so the test set has exactly n_test rows.
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
  return s;
}

}  // namespace

std::optional<SplitMethod> parse_split_method(std::string_view name) {
  if (name == "philox") return SplitMethod::philox;
  if (name == "sklearn") return SplitMethod::sklearn;
  return std::nullopt;
}

std::string sklearn_seed_problem(std::optional<uint64_t> seed) {
  if (seed && *seed <= UINT32_MAX) return "";
  return "= \"sklearn\" draws the split as numpy's RandomState(seed) does, so it needs a seed from 0 to "
         "4294967295" +
         (seed ? ", got " + std::to_string(*seed) : std::string(" (the run has none)"));
}

int64_t test_rows(int64_t rows, double test_fraction, SplitMethod method) {
  const double product = test_fraction * static_cast<double>(rows);
  return static_cast<int64_t>(std::ceil(method == SplitMethod::sklearn ? product : product - 1e-9));
}

SplitIndices split_rows(std::span<const float> labels, int num_classes, double test_fraction, bool stratify,
                        SplitMethod method, RngStreams& rng, Hooks& hooks) {
  TRAINRR_CHECK(test_fraction >= 0 && test_fraction < 1, "test_fraction " + std::to_string(test_fraction));
  TRAINRR_CHECK(labels.size() <= UINT32_MAX, "too many rows");
  TRAINRR_CHECK(!stratify || num_classes > 0, "stratify needs class labels");
  if (stratify)
    for (float v : labels) {
      const auto c = static_cast<int64_t>(v);
      TRAINRR_CHECK(c >= 0 && c < num_classes && static_cast<float>(c) == v, "label " + std::to_string(v));
    }
  const int64_t n_test = test_rows(static_cast<int64_t>(labels.size()), test_fraction, method);
  SplitIndices s;
  if (method == SplitMethod::sklearn) {
    TRAINRR_CHECK(rng.seed() <= UINT32_MAX, "the sklearn split's seed " + std::to_string(rng.seed()));
    s = sklearn_split(labels, n_test, stratify, static_cast<uint32_t>(rng.seed()));
  } else {
    s = philox_split(labels, n_test, stratify, rng);
  }
  hooks.split("data/split", s.train, s.test);
  return s;
}

}  // namespace trainrr
