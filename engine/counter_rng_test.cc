// The draw arithmetic shared with the CUDA kernels (engine/counter_rng.h), compiled here by the host
// compiler, against the CPU engine's own draws: the GPU side runs this same code under nvcc.

#include "engine/counter_rng.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <vector>

#include "engine/random.h"

namespace trainrr {
namespace {

TEST(CounterRng, StreamWordIsTheCpuStreamsWordAtEveryPositionAndKey) {
  for (uint64_t key : {uint64_t{0}, uint64_t{0xffffffffffffffff}, stream_key(42, "dropout/dropout_1")}) {
    // Offsets that start mid-block and cross the 2^32 block boundary of the counter's low word.
    for (uint64_t offset : {uint64_t{0}, uint64_t{3}, (uint64_t{1} << 34) - 5}) {
      std::vector<uint32_t> cpu(37);
      philox_words(key, offset, cpu);
      for (size_t i = 0; i < cpu.size(); ++i)
        ASSERT_EQ(rng::stream_word(key, offset + i), cpu[i]) << "key " << key << " position " << offset + i;
    }
  }
}

TEST(CounterRng, PhiloxKnownAnswers) {
  // Random123's published answers, which cuRAND's Philox4_32_10 gives too: positions 0..3 of key 0 are the
  // block with counter 0.
  const uint32_t zero[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(rng::stream_word(0, i), zero[i]);
}

TEST(CounterRng, UniformIsExactAndBetweenBounds) {
  EXPECT_EQ(rng::uniform01(0), 0.0f);
  EXPECT_EQ(rng::uniform01(0xffffffffu), 1.0f - 0x1p-24f);  // below 1, and the largest value
  EXPECT_EQ(rng::uniform01(0x100u), 0x1p-24f);
  EXPECT_EQ(rng::uniform01(0xffu), 0.0f);  // the low 8 bits never count
  // Every value is k * 2^-24 exactly: the conversion needs no rounding, so no FMA can change it.
  for (uint32_t w : {0x12345678u, 0x80000000u, 0xdeadbeefu}) EXPECT_EQ(rng::uniform01(w) * 16777216.0f, float(w >> 8));
}

TEST(CounterRng, UniformBetweenRoundsTwiceLikeTheCpuStreams) {
  // RngStreams::uniform is what the CPU's layers draw: the shared function must give its bits.
  RngStreams streams(7, null_hooks());
  std::vector<float> cpu(1000);
  streams.uniform("s", "s", cpu, -0.3f, 0.7f);
  const uint64_t key = stream_key(7, "s");
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(rng::uniform_between(rng::stream_word(key, i), -0.3f, 0.7f)),
              std::bit_cast<uint32_t>(cpu[i]))
        << "position " << i;
  // A case where a fused multiply-add would round differently: (hi - lo) * u + lo computed exactly, rounded
  // once, is not the twice-rounded value for this word. The shared function rounds twice.
  const float lo = 0.1f, hi = 1.3f;
  bool fused_differs = false;
  for (uint32_t i = 1; i < 100000 && !fused_differs; ++i) {
    const uint32_t w = i * 2654435761u;
    const float u = rng::uniform01(w);
    const float twice = rng::uniform_between(w, lo, hi);
    fused_differs = std::fmaf(hi - lo, u, lo) != twice;
    EXPECT_EQ(twice, lo + (hi - lo) * u);
  }
  EXPECT_TRUE(fused_differs) << "no word in the sample tells a fused multiply-add from two roundings";
}

TEST(CounterRng, DropoutRule) {
  EXPECT_TRUE(rng::dropout_keeps(0.5f, 0.5f));
  EXPECT_FALSE(rng::dropout_keeps(0.49999997f, 0.5f));
  EXPECT_EQ(rng::dropout_apply(true, 3.0f, 2.0f), 6.0f);
  EXPECT_EQ(rng::dropout_apply(false, INFINITY, 2.0f), 0.0f);
}

}  // namespace
}  // namespace trainrr
