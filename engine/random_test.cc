#include "engine/random.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <thread>

namespace trainrr {
namespace {

// Random123's published known-answer vectors for Philox4x32-10 (its tests/kat_vectors).
TEST(Philox, MatchesRandom123KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox, WordsFollowBlocksInCounterOrder) {
  std::vector<uint32_t> w(8);
  philox_words(0, 0, w);
  auto b0 = philox4x32_10({0, 0, 0, 0}, {0, 0});
  auto b1 = philox4x32_10({1, 0, 0, 0}, {0, 0});
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(w[i], b0[i]);
    EXPECT_EQ(w[4 + i], b1[i]);
  }
}

TEST(RngStreams, SameValuesHoweverDrawsAreSplitIntoCalls) {
  RngStreams one(42, null_hooks()), many(42, null_hooks());
  std::vector<uint32_t> all(103);
  one.words("s", "stream", all);
  std::vector<uint32_t> parts;
  for (size_t n : {1u, 2u, 3u, 5u, 7u, 85u}) {
    std::vector<uint32_t> p(n);
    many.words("s", "stream", p);
    parts.insert(parts.end(), p.begin(), p.end());
  }
  EXPECT_EQ(all, parts);
}

TEST(RngStreams, SameValuesWhateverTheThreadCount) {
  // Each thread computes its share of the words by position alone.
  const uint64_t key = stream_key(9, "dropout/dropout_1");
  std::vector<uint32_t> serial(1000), parallel(1000);
  philox_words(key, 17, serial);
  for (int threads : {2, 3, 7}) {
    std::vector<std::thread> ts;
    const size_t chunk = (parallel.size() + threads - 1) / threads;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        const size_t lo = std::min(parallel.size(), t * chunk), hi = std::min(parallel.size(), lo + chunk);
        philox_words(key, 17 + lo, std::span<uint32_t>(parallel).subspan(lo, hi - lo));
      });
    for (auto& th : ts) th.join();
    EXPECT_EQ(serial, parallel) << threads << " threads";
  }
}

TEST(RngStreams, StreamsAreIndependent) {
  RngStreams a(1, null_hooks()), b(1, null_hooks());
  std::vector<float> x(10), y(10), extra(5);
  a.uniform("dropout/d", "dropout/d", x, 0, 1);
  b.uniform("augment/noise", "augment/noise", extra, 0, 1);  // an extra draw elsewhere
  b.uniform("dropout/d", "dropout/d", y, 0, 1);
  EXPECT_EQ(x, y);
}

TEST(RngStreams, SeedsAndNamesGiveDifferentKeys) {
  EXPECT_NE(stream_key(1, "a"), stream_key(2, "a"));
  EXPECT_NE(stream_key(1, "a"), stream_key(1, "b"));
}

class Capture : public Hooks {
 public:
  void rng_draw(RngDraw& d) override {
    if (force_counter) d.counter = *force_counter;
    draws.push_back(d);
  }
  std::optional<uint64_t> force_counter;
  std::vector<RngDraw> draws;
};

TEST(RngStreams, DrawsAreReportedAndCanBeForced) {
  Capture hooks;
  RngStreams rng(5, hooks);
  std::vector<float> x(6);
  rng.uniform("init/d.kernel", "init/d.kernel", x, -1, 1);
  rng.uniform("init/d.kernel", "init/d.kernel", x, -1, 1);
  ASSERT_EQ(hooks.draws.size(), 2u);
  EXPECT_EQ(hooks.draws[0].counter, 0u);
  EXPECT_EQ(hooks.draws[1].counter, 6u);
  EXPECT_EQ(hooks.draws[1].count, 6u);
  EXPECT_EQ(hooks.draws[0].key, stream_key(5, "init/d.kernel"));
  // Forcing the counter back reproduces the first draw.
  std::vector<float> first(6), again(6);
  RngStreams fresh(5, null_hooks());
  fresh.uniform("s", "init/d.kernel", first, -1, 1);
  hooks.force_counter = 0;
  rng.uniform("init/d.kernel", "init/d.kernel", again, -1, 1);
  EXPECT_EQ(first, again);
}

TEST(RngStreams, UniformAndNormalHaveTheRightMoments) {
  RngStreams rng(3, null_hooks());
  std::vector<float> u(200000), n(200000), t(200000);
  rng.uniform("u", "u", u, -2, 2);
  rng.normal("n", "n", n, 1, 3);
  rng.truncated_normal("t", "t", t, 0, 1);
  auto mean = [](const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x;
    return s / v.size();
  };
  auto var = [&](const std::vector<float>& v) {
    double m = mean(v), s = 0;
    for (float x : v) s += (x - m) * (x - m);
    return s / v.size();
  };
  EXPECT_NEAR(mean(u), 0, 0.02);
  EXPECT_NEAR(var(u), 16.0 / 12, 0.02);
  EXPECT_NEAR(mean(n), 1, 0.03);
  EXPECT_NEAR(var(n), 9, 0.1);
  // A standard normal truncated to [-2, 2] has variance 0.7737.
  EXPECT_NEAR(var(t), 0.7737, 0.01);
  for (float x : t) ASSERT_LE(std::fabs(x), 2.0f);
  for (float x : u) ASSERT_TRUE(x >= -2 && x < 2);
}

TEST(NormalQuantile, MatchesKnownValues) {
  EXPECT_NEAR(normal_quantile(0.5), 0, 1e-12);
  EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-9);
  EXPECT_NEAR(normal_quantile(0.001), -3.090232306167813, 1e-9);
}

TEST(RngStreams, PermutationIsAPermutationAndSeedDependent) {
  RngStreams a(1, null_hooks()), b(2, null_hooks());
  std::vector<uint32_t> p, q;
  a.permutation("data/shuffle", "data/shuffle", p, 100);
  b.permutation("data/shuffle", "data/shuffle", q, 100);
  EXPECT_EQ(std::set<uint32_t>(p.begin(), p.end()).size(), 100u);
  EXPECT_EQ(*std::max_element(p.begin(), p.end()), 99u);
  EXPECT_NE(p, q);
}

TEST(RngStreams, OffsetsRestore) {
  RngStreams a(1, null_hooks());
  std::vector<float> x(10), y(10), z(10);
  a.uniform("s", "s", x, 0, 1);
  auto saved = a.offsets();
  a.uniform("s", "s", y, 0, 1);
  RngStreams b(1, null_hooks());
  b.restore(saved);
  b.uniform("s", "s", z, 0, 1);
  EXPECT_EQ(y, z);
}

}  // namespace
TEST(EntropySeed, FitsInAConfigurationsInteger) {
  // A configuration's seed is a TOML integer (int64): an unseeded run's seed must be one it can give back.
  for (int i = 0; i < 64; ++i) EXPECT_LE(entropy_seed(), static_cast<uint64_t>(INT64_MAX));
}

}  // namespace trainrr
