#pragma once
// The seeded train/test split: by default one permutation drawn from stream "data/split", the test rows taken
// from its front; or the rows scikit-learn's train_test_split picks for the same seed. Either way the result
// is handed to the hooks (the split choice point), which may replace it when replaying.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hooks.h"
#include "engine/random.h"

namespace trainrr {

struct SplitIndices {
  std::vector<uint32_t> train, test;  // row indices, each in permutation order
};

// data.split: how the rows are drawn.
//   philox:  a permutation from the run's Philox stream "data/split".
//   sklearn: the rows, in the order, of scikit-learn's
//            train_test_split(rows, test_size=test_fraction, random_state=seed, stratify=labels or None),
//            drawn as it draws them: numpy's legacy RandomState (MT19937). The seed must be below 2^32.
enum class SplitMethod { philox, sklearn };
std::optional<SplitMethod> parse_split_method(std::string_view name);

// Why `seed` cannot drive the sklearn split ("" when it can), to follow "data.split": numpy's
// RandomState(seed) takes seeds below 2^32, and a run without a seed has none to give it.
std::string sklearn_seed_problem(std::optional<uint64_t> seed);

// The number of test rows, ceil(test_fraction * rows) as scikit-learn takes it. The philox split forgives
// a product a rounding error above a whole number (0.55 * 100 is 55.00000000000001: 55 rows, not 56); the
// sklearn split takes the product as scikit-learn does.
int64_t test_rows(int64_t rows, double test_fraction, SplitMethod method);

// philox: test is the first test_rows() rows of the permutation. With `stratify`, each class c gives its
// first rows in permutation order, floor(n_test * count_c / rows) of them, the rows left over going to the
// largest remainders (ties to the smaller class index), so class proportions are kept.
// sklearn: as StratifiedShuffleSplit or ShuffleSplit, to the row (tests/fixtures/sklearn_splits.py).
// labels: one per row; with `stratify` each is a class index below num_classes, every class with two rows
// or more and test_rows() at least the number of classes on both sides (check_labels checks that first).
// test_fraction must be in [0, 1): the configuration checks it, so a value outside is a bug here.
SplitIndices split_rows(std::span<const float> labels, int num_classes, double test_fraction, bool stratify,
                        SplitMethod method, RngStreams& rng, Hooks& hooks);

}  // namespace trainrr
