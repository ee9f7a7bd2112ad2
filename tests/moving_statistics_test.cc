// A batch normalization's moving statistics are values of a step like any op's output: another momentum,
// which changes them and nothing training reads, diverges at their update with the momentum as its cause. A
// trace written before they were probed still replays, without comparing them.

#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <variant>

#include "tests/test_util.h"
#include "tests/trace_rewrite.h"

namespace trainrr::testing {
namespace {

// Conv2D, BatchNormalization, ReLU, Dense on the digits as 8x8 images: 11 steps of 128, 10% of the training
// rows held out for validation (which reads the moving statistics).
std::string bn_config() {
  return "seed = 5\n[data]\npath = \"" + example("data/digits.csv") +
         "\"\nlabel = \"digit\"\nreshape = [8, 8, 1]\ntest_fraction = 0.2\nscale = \"minmax\"\n"
         "[[model.layers]]\ntype = \"Conv2D\"\nfilters = 8\nkernel_size = 3\npadding = \"same\"\n"
         "[[model.layers]]\ntype = \"BatchNormalization\"\n"
         "[[model.layers]]\ntype = \"Activation\"\nactivation = \"relu\"\n"
         "[[model.layers]]\ntype = \"Flatten\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nactivation = \"softmax\"\n"
         "[train]\nepochs = 1\nbatch_size = 128\nvalidation_split = 0.1\n"
         "loss = \"sparse_categorical_crossentropy\"\n"
         "[runtime]\npolicy = \"deterministic\"\nthreads = 2\n";
}

const std::string kMomentum = "--set 'model.layers[1].momentum=0.9'";

bool has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The first divergence of a JSON report: (step, phase, site).
std::tuple<std::string, std::string, std::string> first_divergence(const std::string& json) {
  std::smatch m;
  if (!std::regex_search(
          json, m,
          std::regex("\"first_divergence\":\\{\"step\":(\\d+),\"phase\":\"([^\"]*)\",\"kind\":\"[^\"]*\","
                     "\"site\":\"([^\"]*)\"")))
    return {};
  return {m[1].str(), m[2].str(), m[3].str()};
}

class MovingStatistics : public ::testing::Test {
 protected:
  std::string record(const std::string& name, const std::string& level, const std::string& extra = "") {
    const std::string trace = dir.file(name);
    CommandResult r = run_trainrr("record " + cfg + " --level " + level + " -o " + trace + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return trace;
  }
  void expect_reproduces(const std::string& trace) {
    CommandResult r = run_trainrr("replay " + trace);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(has(r.output, "reproduced bit for bit")) << r.output;
  }
  TempDir dir;
  std::string cfg = dir.write("bn.toml", bn_config());
};

TEST_F(MovingStatistics, AnotherMomentumDivergesAtTheirUpdateInStepZeroWithTheMomentumAsCause) {
  const std::string a = record("a.trr", "op"), b = record("b.trr", "op", kMomentum);
  expect_reproduces(a);
  expect_reproduces(b);
  using Where = std::tuple<std::string, std::string, std::string>;
  const Where op_level{"0", "forward", "batch_normalization_1/moving_stats.fwd:out"};
  CommandResult d = run_trainrr("diff " + a + " " + b + " --json");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_EQ(first_divergence(d.output), op_level) << d.output;
  EXPECT_TRUE(has(
      d.output,
      R"("cause":{"category":"config","detail":"the run configuration differs: model.layers[1].momentum: 0.99 -> 0.9"})"))
      << d.output;
  CommandResult r = run_trainrr("replay " + a + " " + kMomentum + " --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(first_divergence(r.output), op_level) << r.output;
  EXPECT_TRUE(has(r.output, R"("category":"config")")) << r.output;
  // At level layer, the layer's own probe of them.
  const std::string c = record("c.trr", "layer");
  expect_reproduces(c);
  CommandResult l = run_trainrr("replay " + c + " " + kMomentum + " --json");
  EXPECT_EQ(l.exit_code, 1) << l.output;
  EXPECT_EQ(first_divergence(l.output), (Where{"0", "forward", "batch_normalization_1:moving_stats"}))
      << l.output;
  EXPECT_TRUE(has(l.output, R"("category":"config")")) << l.output;
}

// A trace as a trainrr that did not probe the moving statistics wrote it: no such probe, and a header that
// does not say it holds them.
// At level step no probe compares them, but the epoch's metrics are compared: the validation reads them. A
// replay with another momentum diverges at the evaluation that ends the epoch, with the momentum as its
// cause; the same replay unchanged reproduces.
TEST_F(MovingStatistics, AtLevelStepAnotherMomentumDivergesAtTheEpochsEvaluationInAReplay) {
  const std::string trace = record("step.trr", "step");
  expect_reproduces(trace);
  CommandResult r = run_trainrr("replay " + trace + " " + kMomentum);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "diverged at step 10, evaluation (val_loss)\n")) << r.output;
  EXPECT_TRUE(
      has(r.output, "cause: config: the run configuration differs: model.layers[1].momentum: 0.99 -> 0.9"))
      << r.output;
  EXPECT_TRUE(has(r.output, "what: the metrics of epoch 1 differ: val_loss ")) << r.output;
}

TEST_F(MovingStatistics, ATraceWrittenBeforeTheyWereProbedReplaysWithoutComparingThem) {
  const std::string now = record("now.trr", "op"), before = dir.file("before.trr");
  ASSERT_EQ(rewrite_trace(
                now, before, [](trace::TraceHeader& h) { h.moving_statistics = false; },
                [](trace::TraceStep& s) {
                  std::erase_if(s.events, [](const trace::Event& e) {
                    const auto* p = std::get_if<trace::ProbeEvent>(&e);
                    return p && trace::is_moving_statistics_probe(p->site);
                  });
                }),
            "");
  CommandResult r = run_trainrr("replay " + before);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "reproduced bit for bit")) << r.output;
  EXPECT_TRUE(has(r.output, "did not probe batch normalization's moving statistics: they are not compared"))
      << r.output;
  CommandResult d = run_trainrr("diff " + before + " " + now);
  EXPECT_EQ(d.exit_code, 0) << d.output;
  // Another momentum still changes what validation reads: the epoch's metrics differ, and the configuration
  // is the cause.
  CommandResult m = run_trainrr("diff " + before + " " + record("momentum.trr", "op", kMomentum));
  EXPECT_EQ(m.exit_code, 1) << m.output;
  EXPECT_TRUE(has(m.output, ", evaluation (val_loss)")) << m.output;
  EXPECT_TRUE(has(m.output, "cause: config: the run configuration differs: model.layers[1].momentum"))
      << m.output;
}

}  // namespace
}  // namespace trainrr::testing
