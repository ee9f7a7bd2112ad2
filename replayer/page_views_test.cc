#include "replayer/page_views.h"

#include <gtest/gtest.h>

#include <cmath>

namespace trainrr {
namespace {

Summary summary(uint64_t count, double sum, double sum_sq, float min, float max) {
  Summary s;
  s.count = count;
  s.sum = sum;
  s.sum_sq = sum_sq;
  s.min = min;
  s.max = max;
  return s;
}

std::vector<std::string> sites(const PageViews& p) {
  std::vector<std::string> out;
  for (const auto& r : p.rows) out.push_back(r.block + " " + r.site);
  return out;
}

// One step of a two-layer model as the engine probes it at level layer: outputs forward in model order,
// input gradients backward in reverse order, then the parameters' gradients and values in model order.
void model_step(StepViews& v, int64_t step, int epoch, const Summary* differs_a = nullptr,
                const Summary* differs_b = nullptr) {
  v.begin_step(step, epoch);
  v.probe("conv2d_1:out", "forward", nullptr, nullptr);
  v.probe("dense_1:out", "forward", differs_a, differs_b);
  v.probe("dense_1:dx", "backward", nullptr, nullptr);
  v.probe("conv2d_1:dx", "backward", nullptr, nullptr);
  v.loss(1.0 / static_cast<double>(step + 1), 1.0 / static_cast<double>(step + 1));
  for (const char* p : {"conv2d_1.kernel", "dense_1.kernel"}) v.tensor(p, true, false);
  for (const char* p : {"conv2d_1.kernel", "dense_1.kernel"}) v.tensor(p, false, false);
}

TEST(StepViews, RowsFollowTheModelInEachPartOfTheStepWithGradientsInTheBackwardPart) {
  StepViews v;
  model_step(v, 0, 0);
  PageViews p;
  v.finish(p);
  EXPECT_EQ(sites(p), (std::vector<std::string>{"forward conv2d_1:out", "forward dense_1:out",
                                                "backward conv2d_1:dx", "backward conv2d_1.kernel:grad",
                                                "backward dense_1:dx", "backward dense_1.kernel:grad",
                                                "update conv2d_1.kernel:value", "update dense_1.kernel:value"}));
  EXPECT_EQ(p.rows[3].layer, "conv2d_1");
}

TEST(StepViews, CellsSayWhetherAndHowMuchEachTensorDiffered) {
  StepViews v;
  const Summary a = summary(4, 4, 4, 1, 1), b = summary(4, 4.5, 4.75, 1, 1.5);
  model_step(v, 0, 0);
  model_step(v, 1, 0, &a, &b);
  v.begin_step(2, 0);
  v.probe("conv2d_1:out", "forward", &a, &a);  // other digests, the same summary
  v.tensor("dense_1.kernel", false, true);
  PageViews p;
  v.finish(p);
  ASSERT_EQ(p.rows.size(), 8u);
  const MapRow& conv = p.rows[0];
  const MapRow& dense = p.rows[1];
  ASSERT_EQ(dense.site, "dense_1:out");
  EXPECT_EQ(dense.size[0], MapRow::kSame);
  // max(|1 - 1.5|, |mean 1 - 1.125|, |rms 1 - sqrt(4.75 / 4)|) over the largest magnitude 1.5.
  EXPECT_NEAR(dense.size[1], 0.5 / 1.5, 1e-6);
  EXPECT_EQ(dense.size[2], MapRow::kNotCompared);
  EXPECT_GT(conv.size[2], 0.f);
  EXPECT_LT(conv.size[2], 1e-30f);
  EXPECT_EQ(p.rows[7].site, "dense_1.kernel:value");
  EXPECT_EQ(p.rows[7].size[2], MapRow::kSizeUnknown);
  EXPECT_EQ(p.last_step, 2);
}

TEST(StepViews, ALongRunIsThinnedKeepingEachPointsLargestDifference) {
  StepViews v;
  const Summary a = summary(1, 1, 1, 1, 1), b = summary(1, 2, 4, 2, 2);
  for (int64_t s = 0; s < 10000; ++s) model_step(v, s, 0, s == 5001 ? &a : nullptr, s == 5001 ? &b : nullptr);
  PageViews p;
  v.finish(p);
  EXPECT_LE(p.loss_a.size(), 4096u);
  EXPECT_EQ(p.step_stride, 4);
  EXPECT_EQ(p.loss_a.size(), 2500u);
  // Point i holds its first step's loss.
  EXPECT_DOUBLE_EQ(p.loss_a[1250], 1.0 / 5001.0);
  const MapRow& dense = p.rows[1];
  for (size_t i = 0; i < dense.size.size(); ++i)
    if (i == 1250)
      EXPECT_GT(dense.size[i], 0.f);
    else
      EXPECT_EQ(dense.size[i], MapRow::kSame) << i;
}

TEST(StepViews, EpochsAndValidationLossLandOnTheirSteps) {
  StepViews v;
  for (int64_t s = 3; s < 9; ++s) model_step(v, s, static_cast<int>(s / 4));
  v.epoch_logs(0, 0, {{"loss", 1}, {"val_loss", 2}});
  v.epoch_logs(1, 0, {{"val_loss", 2.5}});
  v.epoch_logs(0, 1, {{"loss", 1}});
  PageViews p;
  v.finish(p);
  EXPECT_EQ(p.first_step, 3);
  ASSERT_EQ(p.epochs.size(), 3u);
  EXPECT_EQ(p.epochs[0].step, 3);
  EXPECT_EQ(p.epochs[0].epoch, 1);
  EXPECT_EQ(p.epochs[1].step, 4);
  EXPECT_EQ(p.epochs[2].step, 8);
  EXPECT_EQ(p.epochs[2].epoch, 3);
  ASSERT_EQ(p.val_loss.size(), 1u);
  EXPECT_EQ(p.val_loss[0].epoch, 1);
  EXPECT_EQ(p.val_loss[0].step, 3);
  EXPECT_EQ(p.val_loss[0].a, 2);
  EXPECT_EQ(p.val_loss[0].b, 2.5);
}

// Runs whose epochs have other lengths (another batch size, validation rows held out): each side's epochs
// and validation losses are where that side's epochs end, and swapping the sides swaps them.
TEST(StepViews, EachSidesEpochsAndValidationLossAreItsOwn) {
  for (int swapped = 0; swapped < 2; ++swapped) {
    StepViews v;
    for (int64_t s = 0; s < 12; ++s) {
      const int four = static_cast<int>(s / 4), three = static_cast<int>(s / 3);
      v.begin_step(s, swapped ? three : four, swapped ? four : three);
      v.loss(1, 1);
    }
    v.epoch_logs(swapped, 0, {{"val_loss", 2}});      // the run of 4 steps an epoch
    v.epoch_logs(1 - swapped, 0, {{"val_loss", 3}});  // the run of 3
    PageViews p;
    v.finish(p);
    std::vector<int64_t> a, b;
    for (const auto& e : p.epochs) a.push_back(e.step);
    for (const auto& e : p.epochs_b) b.push_back(e.step);
    EXPECT_EQ(swapped ? b : a, (std::vector<int64_t>{0, 4, 8}));
    EXPECT_EQ(swapped ? a : b, (std::vector<int64_t>{0, 3, 6, 9}));
    ASSERT_EQ(p.val_loss.size(), 1u);
    const ValidationLoss& val = p.val_loss[0];
    EXPECT_EQ(swapped ? val.step_b : val.step, 3);
    EXPECT_EQ(swapped ? val.b : val.a, 2);
    EXPECT_EQ(swapped ? val.step : val.step_b, 2);
    EXPECT_EQ(swapped ? val.a : val.b, 3);
  }
  // Epochs of one length: B's are not repeated.
  StepViews v;
  for (int64_t s = 0; s < 12; ++s) v.begin_step(s, static_cast<int>(s / 4));
  PageViews p;
  v.finish(p);
  EXPECT_EQ(p.epochs.size(), 3u);
  EXPECT_TRUE(p.epochs_b.empty());
}

// A trace whose steps name ever new sites (crafted: a model's sites repeat every step) keeps the map's rows,
// each a vector of every point, bounded: the sites past the first kMaxMapRows are counted, not kept.
TEST(StepViews, SitesPastTheMapsRowLimitAreCountedNotKept) {
  StepViews v;
  for (int64_t step = 0; step < 50; ++step) {
    v.begin_step(step, 0);
    for (int i = 0; i < 100; ++i)
      v.probe("ghost_" + std::to_string(step) + "_" + std::to_string(i) + ":out", "forward", nullptr,
              nullptr);
    v.loss(1.0, 1.0);
  }
  PageViews p;
  v.finish(p);
  EXPECT_EQ(p.rows.size(), kMaxMapRows);
  EXPECT_EQ(p.sites_left_out, 50u * 100u - kMaxMapRows);
}

TEST(RelativeDifference, OtherShapesOrNonFiniteValuesAreAsFarApartAsItGets) {
  Summary a = summary(4, 1, 1, 0, 1), b = a;
  b.count = 5;
  EXPECT_GE(relative_difference(a, b), 1e30f);
  b = a;
  b.non_finite = 1;
  EXPECT_GE(relative_difference(a, b), 1e30f);
}

// A difference in non-finite values, or one that makes the summaries' difference non-finite (a sum of squares
// past the float range), has no relative size: it is told from a tensor of another size, and from any size.
TEST(RelativeDifference, NonFiniteValuesAndOtherCountsAreToldApartFromAnySize) {
  const Summary a = summary(4, 1, 1, 0, 1);
  Summary b = a;
  b.non_finite = 4;
  EXPECT_EQ(relative_difference(a, b), MapRow::kNonFinite);
  // Finite values whose squares pass float32's range (an exploding run, before it is infinite): a size, the
  // largest, not "non-finite".
  b = summary(4, 1e30, 1e21, 1e20, 1e21);
  b.sum_sq = INFINITY;
  EXPECT_LT(relative_difference(a, b), MapRow::kOtherCount);
  EXPECT_GE(relative_difference(a, b), 1.f);
  b = a;
  b.count = 5;
  EXPECT_EQ(relative_difference(a, b), MapRow::kOtherCount);
  b = summary(4, 1e30, 1e30, 0, 1);  // finite, however far apart: a size below the stand-ins
  EXPECT_LT(relative_difference(a, b), MapRow::kOtherCount);
  // As many non-finite values on both sides (every value, its summary all zeros): no size either, not the
  // "same summary" of the smallest difference.
  Summary all_nan = summary(4, 0, 0, 0, 0);
  all_nan.non_finite = 4;
  EXPECT_EQ(relative_difference(all_nan, all_nan), MapRow::kNonFinite);
}

// Every step's loss that is NaN or infinite is counted, with the first of them, however the points are
// thinned.
TEST(StepViews, LossesThatAreNotFiniteAreCountedFromTheFirst) {
  StepViews v;
  for (int64_t step = 0; step < 10000; ++step) {
    v.begin_step(step, 0);
    v.loss(1.0, step < 3 ? 1.0 : step == 3 ? INFINITY : NAN);
  }
  PageViews p;
  v.finish(p);
  EXPECT_GT(p.step_stride, 1);
  EXPECT_EQ(p.non_finite_a.steps, 0);
  EXPECT_EQ(p.non_finite_a.first, -1);
  EXPECT_EQ(p.non_finite_b.steps, 9997);
  EXPECT_EQ(p.non_finite_b.first, 3);
  EXPECT_EQ(p.non_finite_b.first_value, INFINITY);
}

TEST(SideBySideTable, ListsEveryKeyOfEitherSideWithTheFirstSidesOrder) {
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  const auto t = side_by_side_table(Pairs{{"threads", "2"}, {"os", "Linux"}}, Pairs{{"os", "Linux"}, {"gpu", "H200"}});
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].key, "threads");
  EXPECT_TRUE(t[0].differs());
  EXPECT_EQ(t[0].b, "");
  EXPECT_FALSE(t[1].differs());
  EXPECT_EQ(t[2].key, "gpu");
  EXPECT_EQ(t[2].a, "");
}

TEST(ShellWord, QuotesWhatTheShellWouldSplitOrExpand) {
  EXPECT_EQ(shell_word("runs/a.trr"), "runs/a.trr");
  EXPECT_EQ(shell_word("train.epochs=3"), "train.epochs=3");
  EXPECT_EQ(shell_word("my run.trr"), "'my run.trr'");
  EXPECT_EQ(shell_word("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_word("$(rm -rf x)"), "'$(rm -rf x)'");
  EXPECT_EQ(shell_word(""), "''");
}

}  // namespace
}  // namespace trainrr

namespace trainrr {
namespace {

// A mangled name of nested back-references, each a template of the last one twice: 2^n times its own length
// when demangled.
std::string doubling_name(int n) {
  auto ref = [](int i) {
    const char* digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string b36;
    for (int v = i - 1; v > 0 || b36.empty(); v /= 36) b36.insert(b36.begin(), digits[v % 36]);
    return i == 0 ? std::string("S_") : "S" + b36 + "_";
  };
  std::string s = "_Z1f1A1BIS_S_E";
  for (int k = 0, cur = 2; k < n; ++k, ++cur) s += "S0_I" + ref(cur) + ref(cur) + "E";
  return s;
}

TEST(KernelNames, AreDemangledAndANameBuiltToDemangleToGigabytesIsLeftMangled) {
  EXPECT_EQ(demangled("_ZN7trainrr4cuda4reluEPfi"), "trainrr::cuda::relu(float*, int)");
  EXPECT_EQ(demangled("volta_sgemm_128x64_nn"), "volta_sgemm_128x64_nn");
  // Few back-references: demangled in place, as ever.
  const std::string small = doubling_name(6);
  EXPECT_NE(demangled(small), small);
  EXPECT_EQ(demangled(small).rfind("f(A, B<A, A>, B<B<A, A>, B<A, A> >, ", 0), 0u) << demangled(small);
  // 40 levels: a 400-byte name whose demangling would not fit in memory: left mangled.
  const std::string bomb = doubling_name(40);
  ASSERT_LT(bomb.size(), 600u);
  EXPECT_EQ(demangled(bomb), bomb);
}

}  // namespace
}  // namespace trainrr
