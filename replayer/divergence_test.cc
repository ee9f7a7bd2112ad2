#include "replayer/divergence.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <string>

namespace trainrr {
namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A replay's report that diverged at the place given (divergence()'s arguments).
template <class... Args>
DivergenceReport diverged_replay(Args... place) {
  DivergenceReport r;
  r.command = "replay";
  r.diverged = true;
  r.first = divergence(place...);
  return r;
}

TEST(ReportJson, FactsHaveSnakeCaseKeysAndNumbersAsNumbers) {
  DivergenceReport r;
  r.command = "replay";
  r.facts = {{"steps compared", "15"},
             {"racy choices, always forced", "loader"},
             {"delta-debugging replays", "3"},
             {"window", "0..4"},
             {"ratio", "-0.25"},
             {"code", "007"},
             {"exponent", "1e5"},
             {"loss at step 3", "0.5 vs 0.6"}};
  const std::string json = report_json(r);
  EXPECT_TRUE(has(json, "\"steps_compared\":15,")) << json;
  EXPECT_TRUE(has(json, "\"racy_choices_always_forced\":\"loader\"")) << json;
  EXPECT_TRUE(has(json, "\"delta_debugging_replays\":3,")) << json;
  EXPECT_TRUE(has(json, "\"window\":\"0..4\"")) << json;
  EXPECT_TRUE(has(json, "\"ratio\":-0.25,")) << json;
  EXPECT_TRUE(has(json, "\"code\":\"007\"")) << json;
  EXPECT_TRUE(has(json, "\"exponent\":1e5,")) << json;
  EXPECT_TRUE(has(json, "\"last_loss\":{\"step\":3,\"text\":\"0.5 vs 0.6\"}")) << json;
  r.facts = {{"loss at step 59", "0.101801984 (recorded) vs 0.101802118 (replayed)"},
             {"trainable parameters identical through step", "none: they differ after step 0"}};
  const std::string sides = report_json(r);
  EXPECT_TRUE(has(sides, "\"last_loss\":{\"step\":59,\"recorded\":0.101801984,\"replayed\":0.101802118}"))
      << sides;
  EXPECT_TRUE(has(sides,
                  "\"trainable_parameters_identical_through_step\":null,"
                  "\"trainable_parameters_identical_words\":\"none: they differ after step 0\""))
      << sides;
  r.facts = {{"trainable parameters identical through step", "12"}};
  EXPECT_TRUE(has(report_json(r), "\"trainable_parameters_identical_through_step\":12,")) << report_json(r);
}

TEST(ReportText, AUlpCountNearZeroIsReadByTheAbsoluteDifference) {
  DivergenceReport r = diverged_replay(3, "forward", "probe", "dense_1:out");
  r.first->has_element = true;
  r.first->recorded = 1e-12;
  r.first->replayed = -3e-12;
  r.first->abs_diff = 4e-12;
  r.first->ulp = 4000000;
  EXPECT_TRUE(has(report_text(r), "4000000 ULP (near zero, where a ULP is tiny: the values differ by 4e-12 in "
                                  "absolute terms)"))
      << report_text(r);
  r.first->recorded = 0.5;
  r.first->replayed = 0.50000006;
  r.first->abs_diff = 6e-8;
  r.first->ulp = 1;
  EXPECT_FALSE(has(report_text(r), "near zero")) << report_text(r);
  // Values of other signs far from zero are not near it: the count runs across zero.
  r.first->recorded = -0.017910121;
  r.first->replayed = 999.880554;
  r.first->abs_diff = 999.898464;
  r.first->ulp = 2165092506;
  EXPECT_FALSE(has(report_text(r), "near zero")) << report_text(r);
  EXPECT_TRUE(has(report_text(r),
                  "2165092506 ULP (the values have other signs: the count runs across zero; they "
                  "differ by 999.898464 in absolute terms)"))
      << report_text(r);
  // A NaN is neither near zero nor across it.
  r.first->replayed = NAN;
  EXPECT_FALSE(has(report_text(r), "near zero")) << report_text(r);
  EXPECT_FALSE(has(report_text(r), "other signs")) << report_text(r);
}

// A NaN or an infinity lies on no number line: no |diff| and no ULP count is given beside it (a count to a
// NaN follows its sign bit, which "nan" does not show), in the text and in the JSON.
TEST(ReportText, NonFiniteElementValuesHaveNoDistance) {
  DivergenceReport r = diverged_replay(3, "forward", "step_end", "loss");
  r.first->has_element = true;
  r.first->index = 0;
  r.first->recorded = std::bit_cast<float>(0xffc00000u);  // x86's default NaN, its sign bit set
  r.first->replayed = INFINITY;
  r.first->abs_diff = NAN;
  r.first->ulp = 4282384384u;
  std::string text = report_text(r);
  EXPECT_TRUE(
      has(text, "first differing element: 0: nan (recorded) vs inf (replayed): no distance between them"))
      << text;
  EXPECT_FALSE(has(text, "ULP (")) << text;
  EXPECT_FALSE(has(text, "4282384384")) << text;
  std::string json = report_json(r);
  EXPECT_TRUE(has(json, "\"recorded\":\"nan\",\"replayed\":\"inf\",\"abs_diff\":null,\"ulp\":null")) << json;
  // Two NaNs that differ in their bits alone print their bits, not "nan vs nan".
  r.first->replayed = std::bit_cast<float>(0x7fc00000u);
  text = report_text(r);
  EXPECT_TRUE(has(text, "nan (bits 0xffc00000) (recorded) vs nan (bits 0x7fc00000) (replayed)")) << text;
  // A finite value against an infinity: no distance either.
  r.first->recorded = 3.4028234663852886e38;
  r.first->replayed = INFINITY;
  r.first->ulp = 1;
  EXPECT_TRUE(has(report_text(r), "3.40282347e+38 (recorded) vs inf (replayed): no distance"))
      << report_text(r);
}

// A tensor with no finite value has a summary of zeros that stand for nothing: it says so, and two such are
// not "the same bits".
TEST(ReportText, ASummaryOfNoFiniteValueSaysSo) {
  DivergenceReport r = diverged_replay(1, "forward", "probe", "dense_1/matmul.fwd:out");
  Summary a;
  a.count = 512;
  a.non_finite = 512;
  r.first->summary_recorded = a;
  r.first->summary_replayed = a;
  const std::string text = report_text(r);
  EXPECT_TRUE(has(text,
                  "  recorded: no finite value: all 512 are NaN or infinite\n"
                  "  replayed: no finite value: all 512 are NaN or infinite\n"))
      << text;
  EXPECT_FALSE(has(text, "same bits")) << text;
  EXPECT_FALSE(has(text, "min 0")) << text;
  EXPECT_FALSE(same_summary(a, a));
}

// Summaries that differ past 9 digits print apart; summaries that are the same bits (the tensors differing in
// values a sum, minimum and maximum do not show) say so, never showing two equal lines under "different".
TEST(ReportText, TwoSummariesNeverPrintAlikeUnlessTheyAreTheSameAndThenSaySo) {
  DivergenceReport r = diverged_replay(6, "forward", "probe", "bn/bn_stats.fwd:out");
  Summary a;
  a.count = 16;
  a.sum = 0.19651324123;
  a.min = -0.156324476f;
  a.max = 0.131670192f;
  Summary b = a;
  b.sum = 0.19651324127;
  r.first->summary_recorded = a;
  r.first->summary_replayed = b;
  std::string text = report_text(r);
  EXPECT_TRUE(has(text,
                  "  recorded: sum 0.1965132412, min -0.156324476, max 0.131670192\n"
                  "  replayed: sum 0.1965132413, min -0.156324476, max 0.131670192\n"))
      << text;
  EXPECT_FALSE(has(text, "the same bits")) << text;
  r.first->summary_replayed = a;
  text = report_text(r);
  EXPECT_TRUE(
      has(text,
          "  recorded: sum 0.196513241, min -0.156324476, max 0.131670192\n"
          "  replayed: sum 0.196513241, min -0.156324476, max 0.131670192\n"
          "  the sums, minima and maxima are the same bits: the values differ where these do not show\n"))
      << text;
}

}  // namespace
}  // namespace trainrr

TEST(ReportText, ANaNPrintsWithoutASign) {
  // A NaN's sign bit means nothing; "-nan" beside "nan" would read as two different values.
  const double negative_nan = -std::numeric_limits<double>::quiet_NaN();
  ASSERT_TRUE(std::signbit(negative_nan));
  const auto [a, b] = trainrr::side_by_side(1.5, negative_nan);
  EXPECT_EQ(a, "1.5");
  EXPECT_EQ(b, "nan");
  EXPECT_EQ(trainrr::round_trip(negative_nan), "nan");
}
