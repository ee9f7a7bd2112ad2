// Answers `diff` must give between two recordings of different runs: the first difference is the earliest in
// the order of a step whichever side holds an event the other lacks, and the same with A and B swapped; a
// draw that differs only in its values says so, with the values' digests; epoch metrics that differ are a
// divergence at the epoch's evaluation; and runs of different lengths are never identical.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/test_util.h"
#include "tests/trace_rewrite.h"

namespace trainrr::testing {
namespace {

const std::string kBreastCancer = example("data/breast_cancer.csv");

bool has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The headline, the report's first line.
std::string headline(const std::string& output) { return output.substr(0, output.find('\n')); }

// The breast-cancer model of the examples, one epoch of 18 batches of 32 (no test rows), deterministic:
// `extra` goes into the top level (before any table), `layer` into the first Dense layer, `model` after the
// last layer.
std::string breast_cancer(const std::string& extra, const std::string& layer = "",
                          const std::string& model = "", const std::string& train = "",
                          const std::string& data = kBreastCancer) {
  return "seed = 3\n" + extra + "[data]\npath = \"" + data +
         "\"\nlabel = \"benign\"\nscale = \"standardize\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n" +
         layer + model +
         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
         "[train]\nepochs = 1\nbatch_size = 32\nloss = \"binary_crossentropy\"\n" +
         train + "[runtime]\nthreads = 1\npolicy = \"deterministic\"\n";
}

class DiffAnswers : public ::testing::Test {
 protected:
  // Records `config` as NAME.trr and returns its path.
  std::string record(const std::string& name, const std::string& config, const std::string& args = "") {
    const std::string trace = dir.file(name + ".trr");
    const CommandResult r =
        run_trainrr("record " + dir.write(name + ".toml", config) + " -o " + trace + " " + args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return trace;
  }

  // `diff a b` and `diff b a` name the same first difference, with the labels swapped: `b_headline` is B's
  // extra event as `diff a b` says it, and `what_a_b` its what line.
  void expect_symmetric(const std::string& a, const std::string& b, const std::string& b_headline,
                        const std::string& site) {
    const CommandResult ab = run_trainrr("diff " + a + " " + b);
    const CommandResult ba = run_trainrr("diff " + b + " " + a);
    ASSERT_EQ(ab.exit_code, 1) << ab.output;
    ASSERT_EQ(ba.exit_code, 1) << ba.output;
    EXPECT_EQ(headline(ab.output), b_headline) << ab.output;
    EXPECT_EQ(headline(ba.output), b_headline) << ba.output;
    EXPECT_TRUE(has(ab.output, "B has an event at " + site + " that A does not")) << ab.output;
    EXPECT_TRUE(has(ba.output, "A has an event at " + site + " that B does not")) << ba.output;
  }

  TempDir dir;
};

// B draws noise for its batch before the forward pass, whose values then differ: the draw is the first
// difference, from either side.
TEST_F(DiffAnswers, AnExtraDrawOfBBeforeTheForwardPassIsTheFirstDifferenceEitherWay) {
  const std::string a = record("a", breast_cancer(""), "--level op");
  const std::string b = record("b", breast_cancer("[augment]\nnoise_stddev = 0.05\n"), "--level op");
  expect_symmetric(a, b, "diverged at step 0, input augment/noise", "augment/noise");
}

// Without a bias, the first layer's forward pass has no bias op; every value before the update is the same
// (the bias starts at zero): B's bias op in the forward pass comes before its bias's update.
TEST_F(DiffAnswers, AnOpOnlyBRunsInTheForwardPassComesBeforeItsUpdate) {
  const std::string a = record("a", breast_cancer("", "use_bias = false\n"), "--level op");
  const std::string b = record("b", breast_cancer(""), "--level op");
  expect_symmetric(a, b, "diverged at step 0, forward, dense_1 bias.fwd (dense_1/bias.fwd:out)",
                   "dense_1/bias.fwd:out");
}

// Zeros draw nothing: B's draw of the kernel at setup comes before the forward pass its values change.
TEST_F(DiffAnswers, ADrawOnlyBMakesAtSetupComesBeforeTheForwardPass) {
  const std::string a = record("a", breast_cancer("", "kernel_initializer = \"zeros\"\n"), "--level op");
  const std::string b = record("b", breast_cancer(""), "--level op");
  expect_symmetric(a, b, "diverged at step 0, setup, dense_1 init (init/dense_1.kernel)",
                   "init/dense_1.kernel");
}

// glorot_uniform and he_uniform draw the same words and scale them otherwise: the what line says that the
// draw is the same and that its values differ, with their digests, in the text and the JSON.
TEST_F(DiffAnswers, TheSameDrawMadeIntoOtherValuesSaysSoWithTheDigests) {
  const std::string a = record("a", breast_cancer("", "kernel_initializer = \"glorot_uniform\"\n"));
  const std::string b = record("b", breast_cancer("", "kernel_initializer = \"he_uniform\"\n"));
  const std::regex same(
      R"(draw at init/dense_1\.kernel: stream \S+ key [0-9a-f]{16} counter \d+ count 480 on both sides )"
      R"(\(the same draw, made into other values: digest ([0-9a-f]{16}) \(A\) vs ([0-9a-f]{16}) \(B\)\))");
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, same)) << r.output;
  EXPECT_NE(m[1].str(), m[2].str()) << r.output;
  EXPECT_TRUE(has(r.output, "\n  what: draw at init/dense_1.kernel: ")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "cause: config: the run configuration differs: model.layers[0].kernel_initializer: "
                  "glorot_uniform -> he_uniform"))
      << r.output;
  const CommandResult json = run_trainrr("diff --json " + a + " " + b);
  EXPECT_TRUE(std::regex_search(json.output, same)) << json.output;
}

// Batch normalization's momentum changes only the moving statistics, which the evaluation uses: every value
// of the steps is the same, the validation metrics differ, and the diff names the epoch's evaluation.
TEST_F(DiffAnswers, EpochMetricsThatDifferAreADivergenceAtTheEpochsEvaluation) {
  const std::string bn = "[[model.layers]]\ntype = \"BatchNormalization\"\n";
  const std::string val = "validation_split = 0.2\n";
  const std::string a = record("a", breast_cancer("", "", bn, val));
  const std::string b = record("b", breast_cancer("", "", bn + "momentum = 0.5\n", val));
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(headline(r.output), "diverged at step 14, evaluation (val_loss)") << r.output;
  EXPECT_TRUE(
      has(r.output, "cause: config: the run configuration differs: model.layers[1].momentum: 0.99 -> 0.5"))
      << r.output;
  EXPECT_TRUE(has(r.output, "  what: the metrics of epoch 1 differ: val_loss ")) << r.output;
  EXPECT_FALSE(has(r.output, "no value compared differs")) << r.output;
  const CommandResult json = run_trainrr("diff --json " + a + " " + b);
  EXPECT_TRUE(has(json.output,
                  "\"first_divergence\":{\"step\":14,\"phase\":\"evaluation\",\"kind\":\"metrics\","
                  "\"site\":\"val_loss\",\"layer\":\"\",\"op\":\"\""))
      << json.output;
}

// A step's accuracy comes from its forward pass, as its loss does: one that differs where the loss is the
// same bits is a difference of that step, never an identical run.
TEST_F(DiffAnswers, AStepsMetricThatDiffersWithTheSameLossIsADivergence) {
  const std::string a = record("a", breast_cancer(""));
  const std::string b = dir.file("b.trr");
  ASSERT_EQ(rewrite_trace(
                a, b, [](trace::TraceHeader&) {},
                [](trace::TraceStep& s) {
                  if (s.index == 3 && s.end)
                    for (auto& [name, value] : s.end->metrics) value += 0.25;
                }),
            "");
  for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, a}}) {
    const CommandResult r = run_trainrr("diff " + x + " " + y);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(headline(r.output), "diverged at step 3, forward, metrics") << r.output;
    EXPECT_TRUE(has(r.output, "the metrics of step 3 differ (accuracy ")) << r.output;
  }
}

// Another beta_1 makes Adam's first update the same (its bias correction undoes it) and its slots other: the
// checkpoint after step 0 differs before step 1's parameters do, and comes first, in either order, with the
// step that made it differ (the initial state compared the same).
TEST_F(DiffAnswers, ACheckpointThatDiffersBeforeTheNextStepsParametersComesFirst) {
  const std::string adam = "[train.optimizer]\ntype = \"adam\"\nlearning_rate = 0.001\n";
  const std::string a = record("a", breast_cancer("", "", "", adam), "--checkpoint-every 1");
  const std::string b =
      record("b", breast_cancer("", "", "", adam + "beta_1 = 0.8\n"), "--checkpoint-every 1");
  for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, a}}) {
    const CommandResult r = run_trainrr("diff " + x + " " + y);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(headline(r.output),
              "diverged in the checkpoint at step 1, after step 0, dense_1 (m/dense_1.kernel)")
        << r.output;
    EXPECT_TRUE(has(r.output, "the state before step 0 compared the same, so step 0 made it differ"))
        << r.output;
  }
}

// Runs of other lengths: the page's axis ends where the shorter does, and a validation loss of the longer run
// whose epoch ends past it is not drawn (it was drawn at the axis's end, a step where its epoch had not
// ended).
TEST_F(DiffAnswers, AValidationLossOfAnEpochEndingPastThePlotIsNotDrawn) {
  const std::string train = "validation_split = 0.1\n";
  const std::string a = record("a", breast_cancer("", "", "", train), "--set train.epochs=2");
  const std::string b =
      record("b", breast_cancer("", "", "", train), "--set train.epochs=2 --set train.batch_size=40");
  const CommandResult r = run_trainrr("diff " + a + " " + b + " --html " + dir.file("d.html"));
  ASSERT_EQ(r.exit_code, 1) << r.output;
  std::ifstream in(dir.file("d.html"));
  const std::string page((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto count = [&](const std::string& part) {
    size_t n = 0;
    for (size_t at = page.find(part); at != std::string::npos; at = page.find(part, at + 1)) ++n;
    return n;
  };
  // A (16 steps an epoch) ends its epoch 1 at step 15 and its epoch 2 at step 31, past B's end (step 25, 13
  // steps an epoch): one circle of A's, B's two squares.
  EXPECT_EQ(count("<circle class=\"va\""), 1u) << page;
  EXPECT_EQ(count("<rect class=\"vb\""), 2u) << page;
}

// A changed row the run only validates on (the last rows of the file, with no test split): the steps are the
// same, the validation metrics are not, and the cause says which rows.
TEST_F(DiffAnswers, DataThatDiffersInAValidationRowIsADivergenceAtTheEpochsEvaluation) {
  std::ifstream in(kBreastCancer, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t last = text.rfind('\n', text.size() - 2) + 1;  // the last row (the file ends with a newline)
  const std::string changed =
      dir.write("changed.csv", text.substr(0, last) + "99.5" + text.substr(text.find(',', last)));
  const std::string val = "validation_split = 0.2\n";
  const std::string a = record("a", breast_cancer("", "", "", val));
  const std::string b = record("b", breast_cancer("", "", "", val, changed));
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(headline(r.output), "diverged at step 14, evaluation (val_loss)") << r.output;
  EXPECT_TRUE(has(r.output, "  cause: data: data file 'breast_cancer.csv' differs")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "the evaluation read what differs (a validation row), and the training "
                  "read none of it or changed no value compared"))
      << r.output;
  EXPECT_FALSE(has(r.output, "no value compared differs")) << r.output;
  EXPECT_FALSE(has(r.output, "tests on")) << r.output;
}

// Two and three epochs of the same run: the configurations differ and B holds more steps, so the runs are
// not identical, though every value both hold is.
TEST_F(DiffAnswers, RunsOfDifferentLengthsDivergeInTheInputsAndSayWhichEndsFirst) {
  const std::string a = record("a", breast_cancer(""), "--set train.epochs=2");
  const std::string b = record("b", breast_cancer(""), "--set train.epochs=3");
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(
      r.output.rfind("diverged in the inputs only: no value compared differs (36 steps compared)\n"
                     "  cause: config: the run configuration differs: train.epochs: 2 -> 3, which changes "
                     "how many steps run, not what a step computes: A ends first, after 36 steps, and the "
                     "steps both runs have are the same\n",
                     0),
      0u)
      << r.output;
  const CommandResult json = run_trainrr("diff --json " + b + " " + a);
  EXPECT_EQ(json.exit_code, 1) << json.output;
  EXPECT_TRUE(has(json.output, "\"status\":\"diverged\",\"first_divergence\":null")) << json.output;
  EXPECT_TRUE(has(json.output, "B ends first, after 36 steps")) << json.output;
}

// A trace cut short ends first where it is cut, not where its configuration would end it: the cause does not
// tie the step it stops after to the configuration's difference.
TEST_F(DiffAnswers, ACutTraceEndsFirstWhereItIsCutNotByItsConfiguration) {
  const std::string a = record("a", breast_cancer(""), "--set train.epochs=2");
  const std::string b = record("b", breast_cancer(""), "--set train.epochs=3");
  std::filesystem::resize_file(a, std::filesystem::file_size(a) * 1 / 2);
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output,
                  "  cause: config: the run configuration differs: train.epochs: 2 -> 3, which changes "
                  "how many steps run, not what a step computes, and the steps both runs have are the "
                  "same\n"))
      << r.output;
  EXPECT_TRUE(has(r.output, "  truncated: A (")) << r.output;
  EXPECT_FALSE(
      has(r.output, "2 -> 3, which changes how many steps run, not what a step computes: A ends first"))
      << r.output;
  // B cut further on is said too, though the comparison ends where A does.
  std::filesystem::resize_file(b, std::filesystem::file_size(b) * 9 / 10);
  const CommandResult both = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(both.exit_code, 1) << both.output;
  EXPECT_TRUE(has(both.output, "note: past the steps compared, B (" + b + ") is cut short at byte "))
      << both.output;
}

// The checkpoints both traces hold before the last step compared are compared where the runs end at other
// steps, or one trace is cut: a batch normalization's momentum differs there, which no step compares at
// level step. Skipped, the report said "in the inputs only: no value compared differs".
TEST_F(DiffAnswers, CheckpointsAreComparedWhereTheRunsEndApartOrATraceIsCut) {
  const std::string config = example("digits_bn.toml");
  const std::string common = " --set runtime.policy=deterministic --checkpoint-every 5";
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(run_trainrr("record " + config + common + " --set train.epochs=1 -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr("record " + config + common +
                        " --set train.epochs=2 --set 'model.layers[1].momentum=0.9' -o " + b)
                .exit_code,
            0);
  const CommandResult longer = run_trainrr("diff " + a + " " + b);
  EXPECT_EQ(longer.exit_code, 1) << longer.output;
  EXPECT_EQ(headline(longer.output),
            "diverged in the checkpoint at step 5, after step 4, batch_normalization_1 "
            "(batch_normalization_1.moving_mean)")
      << longer.output;
  // In JSON, the event's step (4) and the checkpoint's own count of steps (5), as export --step takes it.
  const CommandResult json = run_trainrr("diff --json " + a + " " + b);
  EXPECT_TRUE(
      has(json.output, "\"first_divergence\":{\"step\":4,\"phase\":\"checkpoint\",\"kind\":\"state\""))
      << json.output;
  EXPECT_TRUE(has(json.output, "\"checkpoint\":5,")) << json.output;
  // A validation loss that differs at the epoch's end comes after the checkpoint at step 5.
  const std::string va = dir.file("va.trr"), vb = dir.file("vb.trr");
  const std::string val = common + " --set train.epochs=1 --set train.validation_split=0.1";
  ASSERT_EQ(run_trainrr("record " + config + val + " -o " + va).exit_code, 0);
  ASSERT_EQ(
      run_trainrr("record " + config + val + " --set 'model.layers[1].momentum=0.9' -o " + vb).exit_code, 0);
  const CommandResult validated = run_trainrr("diff " + va + " " + vb);
  EXPECT_EQ(validated.exit_code, 1) << validated.output;
  EXPECT_EQ(headline(validated.output),
            "diverged in the checkpoint at step 5, after step 4, batch_normalization_1 "
            "(batch_normalization_1.moving_mean)")
      << validated.output;
  std::filesystem::resize_file(b, std::filesystem::file_size(b) * 3 / 4);
  const CommandResult cut = run_trainrr("diff " + b + " " + a);
  EXPECT_EQ(cut.exit_code, 1) << cut.output;
  EXPECT_EQ(headline(cut.output),
            "diverged in the checkpoint at step 5, after step 4, batch_normalization_1 "
            "(batch_normalization_1.moving_mean)")
      << cut.output;
}

// Two models whose first layers differ (a Dense against a Conv2D): the first difference is an initial
// weight's draw of B's first layer, which A lacks; the keys of the layers after it, in either run, cannot
// reach it, and are not in the cause, from either side.
TEST_F(DiffAnswers, AnInitialDrawOfALayerOneRunLacksIsPlacedAmongTheLayersOfTheRunThatHasIt) {
  const std::string mlp = dir.file("mlp.trr"), cnn = dir.file("cnn.trr");
  ASSERT_EQ(run_trainrr("record " + example("digits_mlp.toml") + " --set train.epochs=1 -o " + mlp).exit_code,
            0);
  ASSERT_EQ(run_trainrr("record " + example("digits_cnn.toml") + " --set train.epochs=1 -o " + cnn).exit_code,
            0);
  for (const std::string& command : {"diff " + mlp + " " + cnn, "diff " + cnn + " " + mlp}) {
    const CommandResult r = run_trainrr(command);
    ASSERT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_EQ(headline(r.output), "diverged at step 0, setup, conv2d_1 init (init/conv2d_1.kernel)")
        << r.output;
    const std::string cause =
        r.output.substr(r.output.find("  cause:"),
                        r.output.find("\n", r.output.find("  cause:")) - r.output.find("  cause:"));
    EXPECT_TRUE(has(cause, "model.layers[0].type: ")) << cause;
    EXPECT_FALSE(has(cause, "model.layers[2].")) << cause;
    EXPECT_FALSE(has(cause, "model.layers[4].")) << cause;
    EXPECT_FALSE(has(cause, " more")) << cause;
  }
  // A Dense layer inserted after the first: both runs have a dense_2, at other places; its draw's size comes
  // from the keys up to it in either run, named alike from either side.
  std::ifstream in(example("digits_mlp.toml"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string first = "units = 64\nactivation = \"relu\"\n";
  text.insert(text.find(first) + first.size(), "\n[[model.layers]]\ntype = \"Dense\"\nunits = 32\n");
  text.replace(text.find("data/digits.csv"), 15, example("data/digits.csv"));
  const std::string mid = dir.file("mid.trr");
  ASSERT_EQ(
      run_trainrr("record " + dir.write("mid.toml", text) + " --set train.epochs=1 -o " + mid).exit_code, 0);
  std::string causes[2];
  for (int i = 0; i < 2; ++i) {
    const CommandResult r = run_trainrr(i == 0 ? "diff " + mlp + " " + mid : "diff " + mid + " " + mlp);
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(headline(r.output), "diverged at step 0, setup, dense_2 init (init/dense_2.kernel)")
        << r.output;
    const size_t at = r.output.find("  cause:");
    causes[i] = r.output.substr(at, r.output.find('\n', at) - at);
    EXPECT_TRUE(has(causes[i], "model.layers[2].units: ")) << causes[i];
  }
}

// A layer given the name the engine gives it unnamed (dense_1) is the same run as one given none: identical.
// A name that is another is a difference, told with the names the runs have.
TEST_F(DiffAnswers, ANameGivenThatIsTheEnginesOwnIsNoDifference) {
  const std::string a = record("a", breast_cancer(""));
  const std::string b = record("b", breast_cancer("", "name = \"dense_1\"\n"));
  const CommandResult same = run_trainrr("diff " + a + " " + b);
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_EQ(headline(same.output),
            "identical: the two runs made the same choices and computed the same bits (18 "
            "steps compared)")
      << same.output;
  const std::string c = record("c", breast_cancer("", "name = \"hidden\"\n"));
  const CommandResult other = run_trainrr("diff " + a + " " + c);
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_TRUE(has(other.output,
                  "cause: config: the run configuration differs: model.layers[0].name: dense_1 -> "
                  "hidden"))
      << other.output;
}

}  // namespace
}  // namespace trainrr::testing
