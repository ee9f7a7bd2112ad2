#include "replayer/divergence.h"

#include <gtest/gtest.h>

#include <string>

namespace trainrr {
namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

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
  EXPECT_TRUE(has(json, "\"loss_at_step_3\":\"0.5 vs 0.6\"")) << json;
}

TEST(ReportText, AUlpCountNearZeroIsReadByTheAbsoluteDifference) {
  DivergenceReport r;
  r.command = "replay";
  r.diverged = true;
  r.first = divergence(3, "forward", "probe", "dense_1:out");
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
}

}  // namespace
}  // namespace trainrr
