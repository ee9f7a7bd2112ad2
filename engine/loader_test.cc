#include "engine/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

namespace trainrr {
namespace {

Dataset rows(int64_t n, int64_t width) {
  Dataset d;
  d.x = Tensor({n, width});
  for (int64_t i = 0; i < d.x.size(); ++i) d.x[i] = static_cast<float>(i);
  d.y.resize(n);
  std::iota(d.y.begin(), d.y.end(), 0.0f);
  return d;
}

std::vector<int64_t> hand_out_all(Loader& loader) {
  std::vector<int64_t> order;
  for (int64_t i = 0; i < loader.batches(); ++i) {
    const int64_t b = loader.propose();
    loader.take(b);
    order.push_back(b);
  }
  return order;
}

std::vector<int64_t> hand_out_all_remaining(Loader& loader) {
  std::vector<int64_t> order;
  for (;;) {
    const int64_t b = loader.propose();
    if (b >= loader.batches()) break;
    loader.take(b);
    order.push_back(b);
  }
  return order;
}

TEST(Loader, OrderedHandsOutBatchesInOrderWithTheEpochsRows) {
  Dataset d = rows(10, 3);
  std::vector<uint32_t> order = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  Loader loader(d, 4, false, 1);
  loader.start(order, {});
  ASSERT_EQ(loader.batches(), 3);
  EXPECT_EQ(loader.propose(), 0);
  Batch b = loader.take(0);
  EXPECT_EQ(b.y, (std::vector<float>{9, 8, 7, 6}));
  EXPECT_EQ(b.x[0], 27.0f);  // row 9's first feature
  EXPECT_EQ(loader.propose(), 1);
  loader.take(1);
  Batch last = loader.take(2);
  EXPECT_EQ(last.y, (std::vector<float>{1, 0}));  // the partial last batch
}

TEST(Loader, ForcedBatchIsHandedOutAndSkippedLater) {
  Dataset d = rows(12, 2);
  std::vector<uint32_t> order(12);
  std::iota(order.begin(), order.end(), 0u);
  for (bool first_ready : {false, true}) {
    Loader loader(d, 3, first_ready, 2);
    loader.start(order, {});
    Batch b = loader.take(2);
    EXPECT_EQ(b.y, (std::vector<float>{6, 7, 8}));
    std::set<int64_t> rest;
    for (int i = 0; i < 3; ++i) {
      const int64_t p = loader.propose();
      EXPECT_NE(p, 2);
      loader.take(p);
      rest.insert(p);
    }
    EXPECT_EQ(rest, (std::set<int64_t>{0, 1, 3}));
  }
}

TEST(Loader, ResumedEpochSkipsBatchesAlreadyDone) {
  Dataset d = rows(8, 1);
  std::vector<uint32_t> order(8);
  std::iota(order.begin(), order.end(), 0u);
  Loader loader(d, 2, false, 1);
  loader.start(order, {0, 2});
  EXPECT_EQ(hand_out_all_remaining(loader), (std::vector<int64_t>{1, 3}));
}

TEST(Loader, FirstReadyOrderDiffersBetweenRuns) {
  // Many small batches and more workers than cores: the workers finish in an order the scheduler picks.
  Dataset d = rows(4000, 64);
  std::vector<uint32_t> order(4000);
  std::iota(order.begin(), order.end(), 0u);
  std::set<std::vector<int64_t>> seen;
  // An epoch takes about 2 ms; on a loaded machine the workers can finish in order many times running, so
  // the test tries up to 400 epochs (it stops at the first order that differs).
  for (int run = 0; run < 400 && seen.size() < 2; ++run) {
    Loader loader(d, 8, true, 8);
    loader.start(order, {});
    seen.insert(hand_out_all(loader));
  }
  EXPECT_GE(seen.size(), 2u) << "400 epochs of the first-ready loader handed out batches in one order";
  // Every batch exactly once, whatever the order.
  Loader loader(d, 8, true, 8);
  loader.start(order, {});
  std::vector<int64_t> got = hand_out_all(loader);
  std::sort(got.begin(), got.end());
  for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) ASSERT_EQ(got[i], i);
}

TEST(Loader, OneLoaderServesEveryEpochWithItsOwnOrder) {
  Dataset d = rows(400, 4);
  for (bool first_ready : {false, true}) {
    Loader loader(d, 8, first_ready, 4);
    for (int epoch = 0; epoch < 60; ++epoch) {
      // Each epoch its own row order: batch b of epoch e holds rows (b * 8 + e) % 400 onwards.
      std::vector<uint32_t> order(400);
      for (uint32_t i = 0; i < 400; ++i) order[i] = (i + epoch) % 400;
      loader.start(order);
      // A forced batch first, as a replay would serve it, then the loader's own proposals.
      Batch forced = loader.take(epoch % 50);
      ASSERT_EQ(forced.y[0], static_cast<float>((epoch % 50 * 8 + epoch) % 400)) << "epoch " << epoch;
      std::vector<int64_t> got = {epoch % 50};
      for (int i = 1; i < 50; ++i) {
        const int64_t b = loader.propose();
        Batch batch = loader.take(b);
        ASSERT_EQ(batch.y[0], static_cast<float>((b * 8 + epoch) % 400)) << "epoch " << epoch << " batch " << b;
        got.push_back(b);
      }
      std::sort(got.begin(), got.end());
      for (int64_t i = 0; i < 50; ++i) ASSERT_EQ(got[i], i) << "epoch " << epoch;
    }
  }
}

}  // namespace
}  // namespace trainrr
