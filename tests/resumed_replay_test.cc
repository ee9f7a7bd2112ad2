// A replay resumed from a checkpoint (--from-step) compares what the resumed run uses: not the draws of the
// initial weights, which the checkpoint's weights replace, but the split it makes again when it is set up and
// the draws of the steps it runs.

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "tests/test_util.h"

namespace trainrr::testing {
namespace {

// The breast-cancer model of the examples: Dense(16, relu), Dense(1, sigmoid), 2 epochs of 32 rows a batch,
// shuffled each epoch; `split` holds out a test fraction first.
std::string breast_cancer(const std::string& split) {
  return "seed = 3\n[data]\npath = \"" + example("data/breast_cancer.csv") + "\"\nlabel = \"benign\"\n" +
         split +
         "scale = \"standardize\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
         "[train]\nepochs = 2\nbatch_size = 32\nloss = \"binary_crossentropy\"\n"
         "[runtime]\nthreads = 1\npolicy = \"deterministic\"\n";
}

bool has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class ResumedReplay : public ::testing::Test {
 protected:
  // Recorded at level op with a checkpoint every 5 steps.
  std::string record(const std::string& split) {
    const std::string cfg = dir.write("run.toml", breast_cancer(split)), trace = dir.file("run.trr");
    CommandResult r = run_trainrr("record " + cfg + " --level op --checkpoint-every 5 -o " + trace);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return trace;
  }
  TempDir dir;
};

// A resumed run chooses its kernels, free, on the batch it resumes at: at the short last batch of an epoch a
// column sum's kernel, chosen by size, is another than the one the recording chose on step 0's full batch.
// The report says that the difference may come from resuming alone, and a full replay reproduces.
TEST_F(ResumedReplay, AKernelChosenOnTheBatchItResumesAtIsSaidToBeChosenThere) {
  const std::string trace = dir.file("bn.trr");
  CommandResult rec = run_trainrr(
      "record " + example("digits_bn.toml") + " --set runtime.policy=deterministic " +
      "--set runtime.threads=2 --set train.epochs=1 --level op --checkpoint-every 11 -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  CommandResult full = run_trainrr("replay " + trace + " --force none");
  EXPECT_EQ(full.exit_code, 0) << full.output;
  CommandResult resumed = run_trainrr("replay " + trace + " --force none --from-step 11");
  if (resumed.exit_code == 1) {
    EXPECT_TRUE(has(resumed.output,
                    "resumed at step 11 with kernels free, chose the kernel at "
                    "batch_normalization_1/bn_stats.fwd on that step's batch"))
        << resumed.output;
    EXPECT_TRUE(has(resumed.output, "a choice made on another batch's size can differ for that alone"))
        << resumed.output;
  } else {
    EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  }
  // Forced, the kernels are the recorded ones, wherever the replay resumes: nothing is said of a choice.
  CommandResult forced = run_trainrr("replay " + trace + " --from-step 11");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_FALSE(has(forced.output, "with kernels free")) << forced.output;
}

// A trace cut short holds no step past its last: a start there is refused, naming the steps it holds, not
// replayed from an earlier checkpoint and called reproduced.
TEST_F(ResumedReplay, AStartPastTheLastStepOfATraceCutShortIsRefused) {
  const std::string trace = record("test_fraction = 0.2\n");
  std::filesystem::resize_file(trace, std::filesystem::file_size(trace) * 6 / 10);
  CommandResult r = run_trainrr("replay " + trace + " --from-step 29");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(
      std::regex_search(r.output, std::regex(R"(step 29 is past the end of the trace: it holds steps )"
                                             R"(0\.\.\d+ \(it did not end cleanly\))")))
      << r.output;
}

TEST_F(ResumedReplay, AnotherInitializerChangesNothingTheResumedRunComputes) {
  const std::string trace = record("");
  const std::string he = " --force none --set 'model.layers[1].kernel_initializer=he_normal'";
  // From the start, the initializer's draw differs.
  CommandResult start = run_trainrr("replay " + trace + he);
  EXPECT_EQ(start.exit_code, 1) << start.output;
  EXPECT_TRUE(has(start.output, "diverged at step 0, setup, dense_2 init (init/dense_2.kernel)"))
      << start.output;
  // From the checkpoint of step 10, which replaces the initial weights, every step matches.
  CommandResult resumed = run_trainrr("replay " + trace + " --from-step 12 --keep-going" + he);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(has(resumed.output, "reproduced bit for bit (26 steps compared)")) << resumed.output;
  EXPECT_TRUE(
      has(resumed.output,
          "model.layers[1].kernel_initializer changes only the initial weights, and the run resumed from "
          "the checkpoint at step 10 takes its weights from there"))
      << resumed.output;
  CommandResult json = run_trainrr("replay " + trace + " --from-step 12 --json" + he);
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_TRUE(has(json.output, "\"first_divergence\":null")) << json.output;
}

// Without a test split, a resumed run uses the seed first where it draws: the second epoch's shuffle, at
// step 18.
TEST_F(ResumedReplay, AnotherSeedDivergesFirstAtTheNextDrawTheResumedRunMakes) {
  const std::string trace = record("");
  CommandResult r = run_trainrr("replay " + trace + " --from-step 10 --force none --set seed=4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "diverged at step 18, input data/shuffle")) << r.output;
  EXPECT_TRUE(has(r.output, "cause: config: the run configuration differs: seed: 3 -> 4")) << r.output;
  EXPECT_TRUE(has(r.output, "steps compared: 9")) << r.output;
}

// The split is made when the run is set up, and no checkpoint holds it: a resumed run trains on the rows its
// own split selects, and another seed's split differs before the first step it runs, the step it resumes at.
TEST_F(ResumedReplay, AnotherSeedsSplitDiffersInTheSetUpTheResumedRunRunsAgain) {
  const std::string trace = record("test_fraction = 0.2\n");
  CommandResult r = run_trainrr("replay " + trace + " --from-step 10 --force none --set seed=4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "diverged at step 10, input data/split")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "; recorded with step 0, made again by the set-up of this replay, which resumed from "
                  "the checkpoint at step 10"))
      << r.output;
  EXPECT_FALSE(has(r.output, "init/")) << r.output;
  EXPECT_TRUE(has(r.output, "no checkpoint holds the data's split")) << r.output;
  // It matters: the first step resumed computes another loss, and with the recorded split the same one.
  const std::regex loss("loss at step 10: (\\S+) \\(recorded\\) vs (\\S+) \\(replayed\\)");
  std::smatch m;
  const std::string one = " --from-step 10 --to-step 11 --keep-going --set seed=4";
  CommandResult free = run_trainrr("replay " + trace + one + " --force none");
  ASSERT_TRUE(std::regex_search(free.output, m, loss)) << free.output;
  EXPECT_NE(m[1].str(), m[2].str()) << free.output;
  CommandResult forced = run_trainrr("replay " + trace + one + " --force split");
  ASSERT_TRUE(std::regex_search(forced.output, m, loss)) << forced.output;
  EXPECT_EQ(m[1].str(), m[2].str()) << forced.output;
}

}  // namespace
}  // namespace trainrr::testing
