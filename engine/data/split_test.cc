#include "engine/data/split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/data/csv.h"

namespace trainrr {
namespace {

// Labels 0..k-1 with the given counts, interleaved so that order says nothing about class.
std::vector<float> labels_with_counts(const std::vector<int>& counts) {
  std::vector<float> y;
  for (int round = 0; y.size() < static_cast<size_t>(std::accumulate(counts.begin(), counts.end(), 0)); ++round)
    for (size_t c = 0; c < counts.size(); ++c)
      if (round < counts[c]) y.push_back(static_cast<float>(c));
  return y;
}

SplitIndices split(std::span<const float> y, int k, double frac, bool stratify, uint64_t seed) {
  RngStreams rng(seed, null_hooks());
  return split_rows(y, k, frac, stratify, SplitMethod::philox, rng, null_hooks());
}

// True if `sub` appears in `perm` in the same relative order.
bool is_subsequence(const std::vector<uint32_t>& sub, const std::vector<uint32_t>& perm) {
  size_t i = 0;
  for (uint32_t v : perm)
    if (i < sub.size() && sub[i] == v) ++i;
  return i == sub.size();
}

std::vector<uint32_t> permutation_of_stream(uint64_t seed, uint32_t n) {
  RngStreams rng(seed, null_hooks());
  std::vector<uint32_t> perm;
  rng.permutation("data/split", "data/split", perm, n);
  return perm;
}

TEST(DataSplit, TestIsTheFrontOfTheSplitStreamsPermutation) {
  const std::vector<float> y(10, 0.0f);
  SplitIndices s = split(y, 1, 0.25, false, 42);
  const std::vector<uint32_t> perm = permutation_of_stream(42, 10);
  ASSERT_EQ(s.test.size(), 3u);  // ceil(2.5)
  EXPECT_EQ(s.test, std::vector<uint32_t>(perm.begin(), perm.begin() + 3));
  EXPECT_EQ(s.train, std::vector<uint32_t>(perm.begin() + 3, perm.end()));
}

TEST(DataSplit, TrainAndTestPartitionTheRows) {
  const std::vector<float> y = labels_with_counts({40, 35, 25});
  for (bool stratify : {false, true}) {
    SplitIndices s = split(y, 3, 0.3, stratify, 5);
    std::vector<uint32_t> all = s.train;
    all.insert(all.end(), s.test.begin(), s.test.end());
    std::sort(all.begin(), all.end());
    std::vector<uint32_t> expected(y.size());
    std::iota(expected.begin(), expected.end(), 0u);
    EXPECT_EQ(all, expected) << "stratify " << stratify;
  }
}

TEST(DataSplit, ZeroFractionLeavesEveryRowInTrain) {
  const std::vector<float> y = labels_with_counts({3, 4});
  for (bool stratify : {false, true}) {
    SplitIndices s = split(y, 2, 0.0, stratify, 1);
    EXPECT_TRUE(s.test.empty());
    EXPECT_EQ(s.train.size(), 7u);
  }
}

TEST(DataSplit, StratifiedTakesEachClassShareOfCeilFractionRows) {
  const std::vector<int> counts = {50, 31, 9, 7};
  const std::vector<float> y = labels_with_counts(counts);
  const double frac = 0.2;
  SplitIndices s = split(y, 4, frac, true, 9);
  std::vector<int> in_test(4, 0);
  for (uint32_t r : s.test) ++in_test[static_cast<int>(y[r])];
  // ceil(0.2 * 97) = 20 test rows; shares 10.31, 6.39, 1.86, 1.44 floor to 10, 6, 1, 1 and the two rows
  // left go to the largest remainders (classes 2 and 3).
  EXPECT_EQ(in_test, (std::vector<int>{10, 6, 2, 2}));
  EXPECT_EQ(s.test.size(), 20u);
  for (size_t c = 0; c < counts.size(); ++c) EXPECT_LE(std::abs(in_test[c] - frac * counts[c]), 1.0);
}

TEST(DataSplit, StratifiedWithSparseClassIndicesCountsOnlyThePresentClasses) {
  // Two classes, 0 and 16000000: the split is that of two classes, not of sixteen million.
  const std::vector<float> y = {0, 16000000, 0, 16000000, 0, 16000000};
  SplitIndices s = split(y, 16000001, 0.5, true, 3);
  ASSERT_EQ(s.test.size(), 3u);
  int zeros = 0;
  for (uint32_t r : s.test) zeros += y[r] == 0;
  EXPECT_EQ(zeros, 2);  // 1.5 rows each: the leftover row goes to the smaller class index
}

TEST(DataSplit, StratifiedKeepsPermutationOrderWithinTrainAndTest) {
  const std::vector<float> y = labels_with_counts({20, 13, 7});
  SplitIndices s = split(y, 3, 0.25, true, 77);
  const std::vector<uint32_t> perm = permutation_of_stream(77, static_cast<uint32_t>(y.size()));
  EXPECT_TRUE(is_subsequence(s.test, perm));
  EXPECT_TRUE(is_subsequence(s.train, perm));
  // Each class's test rows are that class's first rows in the permutation.
  for (int c = 0; c < 3; ++c) {
    std::vector<uint32_t> of_class, test_of_class;
    for (uint32_t r : perm)
      if (y[r] == c) of_class.push_back(r);
    for (uint32_t r : s.test)
      if (y[r] == c) test_of_class.push_back(r);
    EXPECT_EQ(test_of_class, std::vector<uint32_t>(of_class.begin(), of_class.begin() + test_of_class.size()));
  }
}

TEST(DataSplit, StratifiedBreastCancerKeepsClassProportions) {
  Result<Dataset> d = read_csv(TRAINRR_SOURCE_DIR "/examples/data/breast_cancer.csv", "benign");
  ASSERT_TRUE(d.ok()) << d.error().message;
  SplitIndices s = split(d->y, 2, 0.2, true, 42);
  int benign_test = 0;
  for (uint32_t r : s.test) benign_test += d->y[r] == 1;
  // ceil(0.2 * 569) = 114 test rows: shares 71.53 and 42.47, the spare row to the larger remainder.
  EXPECT_EQ(benign_test, 72);
  EXPECT_EQ(static_cast<int>(s.test.size()) - benign_test, 42);
}

TEST(DataSplit, SameSeedSameSplitOtherSeedOtherSplit) {
  const std::vector<float> y = labels_with_counts({30, 30});
  for (bool stratify : {false, true}) {
    SplitIndices a = split(y, 2, 0.2, stratify, 1), b = split(y, 2, 0.2, stratify, 1);
    SplitIndices c = split(y, 2, 0.2, stratify, 2);
    EXPECT_EQ(a.test, b.test);
    EXPECT_EQ(a.train, b.train);
    EXPECT_NE(a.test, c.test);
  }
}

class RecordingHooks : public Hooks {
 public:
  void rng_draw(RngDraw& draw) override { draws.push_back(draw); }
  void split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) override {
    sites.emplace_back(site);
    seen_test = test;
    if (force) std::swap(train, test);
  }
  bool force = false;
  std::vector<RngDraw> draws;
  std::vector<std::string> sites;
  std::vector<uint32_t> seen_test;
};

TEST(DataSplit, DrawAndSplitGoThroughTheHooksAtDataSplit) {
  const std::vector<float> y(12, 0.0f);
  RecordingHooks hooks;
  RngStreams rng(3, hooks);
  SplitIndices s = split_rows(y, 1, 0.5, false, SplitMethod::philox, rng, hooks);
  ASSERT_EQ(hooks.draws.size(), 1u);
  EXPECT_EQ(hooks.draws[0].site, "data/split");
  EXPECT_EQ(hooks.draws[0].stream, "data/split");
  EXPECT_EQ(hooks.draws[0].count, 11u);  // one word per Fisher-Yates swap
  EXPECT_EQ(hooks.sites, (std::vector<std::string>{"data/split"}));
  EXPECT_EQ(hooks.seen_test, s.test);
}

TEST(DataSplit, AHookMayReplaceTheSplit) {
  const std::vector<float> y(10, 0.0f);
  RecordingHooks hooks;
  hooks.force = true;
  RngStreams rng(3, hooks);
  SplitIndices s = split_rows(y, 1, 0.2, false, SplitMethod::philox, rng, hooks);
  EXPECT_EQ(s.train, hooks.seen_test);  // what the hook left, not what the engine chose
  EXPECT_EQ(s.test.size(), 8u);
}

SplitIndices sklearn(std::span<const float> y, double frac, bool stratify, uint64_t seed) {
  RngStreams rng(seed, null_hooks());
  return split_rows(y, stratify ? 16 : 1, frac, stratify, SplitMethod::sklearn, rng, null_hooks());
}

using Rows = std::vector<uint32_t>;

// The expected rows come from scikit-learn 1.2.1 with numpy 1.24.2: tests/fixtures/sklearn_splits.py.
TEST(SklearnSplit, ShuffleSplitRowsAsScikitLearn) {
  const std::vector<float> y(20, 0.0f);
  SplitIndices a = sklearn(y, 0.25, false, 0);
  EXPECT_EQ(a.train, (Rows{17, 6, 13, 4, 2, 5, 14, 9, 7, 16, 11, 3, 0, 15, 12}));
  EXPECT_EQ(a.test, (Rows{18, 1, 19, 8, 10}));
  SplitIndices b = sklearn(y, 0.25, false, 4294967295);
  EXPECT_EQ(b.train, (Rows{5, 8, 16, 13, 18, 14, 9, 10, 6, 0, 4, 7, 12, 2, 3}));
  EXPECT_EQ(b.test, (Rows{11, 17, 19, 15, 1}));
}

TEST(SklearnSplit, StratifiedShuffleSplitRowsAsScikitLearnTiesIncluded) {
  // Classes of equal size have equal remainders: scikit-learn breaks those ties with its generator.
  const std::vector<float> y = labels_with_counts({4, 4, 4, 3});
  SplitIndices a = sklearn(y, 0.4, true, 0);
  EXPECT_EQ(a.train, (Rows{7, 10, 9, 2, 8, 12, 1, 14, 3}));
  EXPECT_EQ(a.test, (Rows{5, 13, 6, 4, 0, 11}));
  SplitIndices b = sklearn(y, 0.4, true, 7);
  EXPECT_EQ(b.train, (Rows{4, 2, 13, 5, 7, 11, 12, 6, 14}));
  EXPECT_EQ(b.test, (Rows{1, 3, 8, 0, 10, 9}));
  SplitIndices c = sklearn(labels_with_counts({5, 2, 6}), 0.3, true, 3);
  EXPECT_EQ(c.train, (Rows{0, 3, 10, 5, 4, 8, 7, 9, 11}));
  EXPECT_EQ(c.test, (Rows{1, 2, 6, 12}));
}

TEST(SklearnSplit, BreastCancerTestRowsAsTrainTestSplitWithRandomState42) {
  Result<Dataset> d = read_csv(TRAINRR_SOURCE_DIR "/examples/data/breast_cancer.csv", "benign");
  ASSERT_TRUE(d.ok()) << d.error().message;
  SplitIndices plain = sklearn(d->y, 0.2, false, 42);
  ASSERT_EQ(plain.test.size(), 114u);
  EXPECT_EQ(
      Rows(plain.test.begin(), plain.test.begin() + 20),
      (Rows{204, 70, 131, 431, 540, 567, 369, 29, 81, 477, 457, 167, 165, 329, 527, 83, 511, 556, 101, 535}));
  SplitIndices stratified = sklearn(d->y, 0.2, true, 42);
  ASSERT_EQ(stratified.test.size(), 114u);
  EXPECT_EQ(Rows(stratified.test.begin(), stratified.test.begin() + 20),
            (Rows{256, 428, 501, 363, 564, 464, 358, 343, 516, 567,
                  292, 199, 527, 121, 353, 495, 541, 537, 308, 242}));
}

TEST(SklearnSplit, TakesTheProductAsScikitLearnDoes) {
  // 0.55 * 100 is 55.00000000000001 in doubles: scikit-learn's ceil makes that 56 test rows.
  EXPECT_EQ(test_rows(100, 0.55, SplitMethod::sklearn), 56);
  EXPECT_EQ(test_rows(100, 0.55, SplitMethod::philox), 55);
  EXPECT_EQ(test_rows(569, 0.2, SplitMethod::sklearn), 114);
  EXPECT_EQ(test_rows(569, 0.2, SplitMethod::philox), 114);
}

TEST(SklearnSplit, DrawsNothingFromThePhiloxStreamsAndGoesThroughTheSplitHook) {
  const std::vector<float> y(12, 0.0f);
  RecordingHooks hooks;
  RngStreams rng(3, hooks);
  SplitIndices s = split_rows(y, 1, 0.5, false, SplitMethod::sklearn, rng, hooks);
  EXPECT_TRUE(hooks.draws.empty());
  EXPECT_EQ(hooks.sites, (std::vector<std::string>{"data/split"}));
  EXPECT_EQ(hooks.seen_test, s.test);
}

TEST(SklearnSplit, MethodNames) {
  EXPECT_EQ(parse_split_method("philox"), SplitMethod::philox);
  EXPECT_EQ(parse_split_method("sklearn"), SplitMethod::sklearn);
  EXPECT_EQ(parse_split_method("numpy"), std::nullopt);
}

TEST(DataSplitDeathTest, FractionOutsideTheUnitIntervalIsABug) {
  const std::vector<float> y(4, 0.0f);
  EXPECT_DEATH(split(y, 1, 1.0, false, 1), "test_fraction");
  EXPECT_DEATH(split(y, 1, -0.1, false, 1), "test_fraction");
}

}  // namespace
}  // namespace trainrr
