#pragma once
// The seeded train/test split: one permutation drawn from stream "data/split", the test rows taken from its
// front, then handed to the hooks (the split choice point), which may replace them when replaying.

#include <cstdint>
#include <span>
#include <vector>

#include "engine/hooks.h"
#include "engine/random.h"

namespace trainrr {

struct SplitIndices {
  std::vector<uint32_t> train, test;  // row indices, each in permutation order
};

// test: the first round(test_fraction * n) rows of the permutation. With `stratify`, each class c gives its
// first round(test_fraction * count_c) rows in permutation order (as sklearn does per class), so class
// proportions are kept. labels: one per row; with `stratify` each is a class index below num_classes.
// Halves round away from zero (std::llround; Python's round() would go to even).
// test_fraction must be in [0, 1): the configuration checks it, so a value outside is a bug here.
SplitIndices split_rows(std::span<const float> labels, int num_classes, double test_fraction, bool stratify,
                        RngStreams& rng, Hooks& hooks);

}  // namespace trainrr
