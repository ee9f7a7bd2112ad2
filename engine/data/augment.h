#pragma once
// Batch augmentation, in place. Every call makes exactly one draw from its own stream (one event in a trace,
// site name = stream name), so augmenting never shifts another stream and replay can force it as a unit.

#include <cstdint>

#include "engine/random.h"
#include "engine/tensor.h"

namespace trainrr {

// Adds N(0, stddev) to every value. Site and stream "augment/noise"; one normal value per element.
void gaussian_noise(Tensor& batch, float stddev, RngStreams& rng);

// batch: [n, h, w, c]. Mirrors each sample left-right with probability 1/2: when the top bit of its word is
// set. Site and stream "augment/flip"; one word per sample.
void random_flip(Tensor& batch, RngStreams& rng);

// batch: [n, h, w, c]. Moves each sample's content by dy, dx, each uniform in [-max_shift, max_shift]
// (dy from the sample's first word, dx from its second, as floor(word * (2 * max_shift + 1) / 2^32) - max_shift),
// filling uncovered pixels with 0. Site and stream "augment/shift"; two words per sample.
void random_shift(Tensor& batch, int64_t max_shift, RngStreams& rng);

}  // namespace trainrr
