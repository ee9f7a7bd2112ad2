#pragma once
// A seeded, learnable data set for benchmarks: each class has a random mean pattern, and each sample is its
// class's pattern plus noise. The same arguments give the same bytes on any machine.

#include <cstdint>

#include "engine/data/dataset.h"
#include "engine/tensor.h"

namespace trainrr {

// x: [count, ...sample_shape]; y: class indices in [0, classes), drawn uniformly; num_classes = classes.
// Pattern values are uniform in [-1, 1]; noise has mean 0 and standard deviation 1.
Dataset synthetic_dataset(const Shape& sample_shape, int classes, int64_t count, uint64_t seed);

}  // namespace trainrr
