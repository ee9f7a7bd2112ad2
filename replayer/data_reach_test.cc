#include "replayer/data_reach.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "engine/data/split.h"
#include "engine/hooks.h"
#include "engine/random.h"
#include "engine/trainer.h"

namespace trainrr {
namespace {

namespace fs = std::filesystem;

// Ten rows of two features and a label; row i holds (i, 10 + i) and label i % 2.
std::string rows(int changed_row = -1, bool label = false, int count = 10) {
  std::string s = "a,b,y\n";
  for (int i = 0; i < count; ++i) {
    const bool here = i == changed_row;
    s += std::to_string(here && !label ? 100 + i : i) + "," + std::to_string(10 + i) + "," +
         std::to_string(here && label ? 1 - i % 2 : i % 2) + "\n";
  }
  return s;
}

class DataReachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("trainrr-reach-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  }

  // The run reading `data` (no test split, batches of 2 in file order, one epoch of 5 steps) and the data
  // configuration that reads `other` instead.
  RunConfig run(const std::string& data, const std::string& extra = "") {
    auto c =
        parse_config("seed = 1\n[data]\npath = \"" + data + "\"\nlabel = \"y\"\ntest_fraction = 0\n" + extra +
                         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\n[train]\nepochs = 1\n"
                         "batch_size = 2\nshuffle = false\nloss = \"mse\"\n",
                     "run.toml", dir.string());
    EXPECT_TRUE(c) << c.error().message;
    return *c;
  }
  static DataSchedule in_order(int steps) {
    DataSchedule s;
    for (int i = 0; i < steps; ++i) s.batches.push_back({i, 0, i});
    return s;
  }

  fs::path dir;
};

TEST_F(DataReachTest, AChangedRowIsFirstReadByTheStepWhoseBatchHoldsIt) {
  const RunConfig config = run(write("b.csv", rows(6)));
  RunConfig other = run(write("a.csv", rows()));
  auto r = data_reach(config, other.data, in_order(5));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->first_step, 3);
  EXPECT_EQ(r->first_feature_step, 3);
  EXPECT_EQ(r->first_row, 6);
  EXPECT_EQ(r->rows_differ, 1);
  EXPECT_EQ(data_reach_words(*r),
            "step 3 is the first to read a training row that differs (data row 6 (counting from 0), line 8 "
            "of the file)");
}

// A blank line holds no row: a row is named by the line that holds it, in each copy where they differ.
TEST_F(DataReachTest, ARowIsNamedByTheLineThatHoldsItInEachCopy) {
  std::string blank = rows(6);
  blank.insert(blank.find("\n") + 1, "\n");  // a blank line after the header: row 6 is on line 9
  const RunConfig config = run(write("b.csv", blank));
  auto r = data_reach(config, run(write("a.csv", rows())).data, in_order(5));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(data_reach_words(*r),
            "step 3 is the first to read a training row that differs (data row 6 (counting from 0), line 8 "
            "(recorded), 9 (now))");
  auto same_lines = data_reach(
      config, run(write("a2.csv", blank.replace(blank.find("\n106,"), 5, "\n6,"))).data, in_order(5));
  ASSERT_TRUE(same_lines) << same_lines.error().message;
  EXPECT_EQ(same_lines->first_step, 3);
  EXPECT_EQ(
      data_reach_words(*same_lines),
      "step 3 is the first to read a training row that differs (data row 6 (counting from 0), line 9 of "
      "the file)");
}

TEST_F(DataReachTest, ALabelAloneIsReadAtItsStepWithNoFeatureThatDiffers) {
  const RunConfig config = run(write("b.csv", rows(2, true)));
  auto r = data_reach(config, run(write("a.csv", rows())).data, in_order(5));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->first_step, 1);
  EXPECT_EQ(r->first_feature_step, -1);
  EXPECT_TRUE(r->labels);
  EXPECT_FALSE(r->features);
}

TEST_F(DataReachTest, StandardizingSpreadsOneChangedTrainingRowToEveryRow) {
  const std::string scale = "scale = \"standardize\"\n";
  const RunConfig config = run(write("b.csv", rows(6)), scale);
  auto r = data_reach(config, run(write("a.csv", rows()), scale).data, in_order(5));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->first_step, 0);
}

TEST_F(DataReachTest, AValidationRowIsReadByNoStep) {
  RunConfig config = run(write("b.csv", rows(9)));
  config.train.validation_split = 0.2;  // rows 8 and 9: 4 steps of 2
  RunConfig other = run(write("a.csv", rows()));
  auto r = data_reach(config, other.data, in_order(4));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->first_step, -1);
  EXPECT_TRUE(r->validation);
  EXPECT_EQ(data_reach_words(*r),
            "no step up to step 3 reads a training row that differs (only validation rows differ)");
  EXPECT_EQ(unread_data_words(&*r, 3), data_reach_words(*r));
}

// Without the recorded copy, where the rows lie is not known: a file whose text alone differs (its line
// endings, say) is among what the words offer, beside rows only tested on.
TEST(DataReachWords, WithoutTheRecordedCopyTheTextAloneIsOneOfTheReasonsGiven) {
  const std::string words = unread_data_words(nullptr, 3);
  EXPECT_NE(words.find("rows it only tests on"), std::string::npos) << words;
  EXPECT_NE(words.find("the files differ in their text alone (line endings, how a number is written)"),
            std::string::npos)
      << words;
}

TEST_F(DataReachTest, CopiesOfOtherRowCountsOrASplitNotKnownCannotBeCompared) {
  const RunConfig config = run(write("b.csv", rows(-1, false, 10)));
  EXPECT_FALSE(data_reach(config, run(write("a.csv", rows(-1, false, 9))).data, in_order(5)));
  RunConfig split = config;
  split.data.test_fraction = 0.2;
  EXPECT_FALSE(
      data_reach(split, run(write("c.csv", rows(3))).data, in_order(4)));  // no split in the schedule
  // A schedule that names a batch past the rows is not this run's.
  DataSchedule past = in_order(5);
  past.batches.push_back({5, 0, 7});
  EXPECT_FALSE(data_reach(config, run(write("d.csv", rows(3))).data, past));
}

// A stratified split reads the labels: the copies are compared only where both copies' labels pick the rows
// the run's split holds. Of the single label changes, those that leave the split as it was are compared, the
// others are not.
TEST_F(DataReachTest, AStratifiedSplitIsComparedOnlyWhereTheLabelsThatDifferPickTheSameRows) {
  std::string twenty = "a,b,y\n";
  for (int i = 0; i < 20; ++i)
    twenty += std::to_string(i) + "," + std::to_string(10 + i) + "," + std::to_string(i % 2) + "\n";
  const std::string stratified = "stratify = true\n";
  RunConfig config = run(write("a.csv", twenty), stratified);
  config.data.test_fraction = 0.2;
  auto data = load_dataset(config.data, *config.seed, config.file);
  ASSERT_TRUE(data) << data.error().message;
  Hooks none;
  RngStreams rng(*config.seed, none);
  const SplitIndices split =
      split_rows(data->y, data->num_classes, 0.2, true, SplitMethod::philox, rng, none);
  DataSchedule schedule;
  schedule.split = true;
  schedule.split_train = split.train;
  schedule.split_test = split.test;
  int compared = 0, refused = 0;
  for (int row = 0; row < 20; ++row) {
    std::string changed = "a,b,y\n";
    for (int i = 0; i < 20; ++i)
      changed += std::to_string(i) + "," + std::to_string(10 + i) + "," +
                 std::to_string(i == row ? 1 - i % 2 : i % 2) + "\n";
    RunConfig other = run(write("b" + std::to_string(row) + ".csv", changed), stratified);
    other.data.test_fraction = 0.2;
    auto labels = load_dataset(other.data, *config.seed, config.file);
    ASSERT_TRUE(labels) << labels.error().message;
    RngStreams rng_b(*config.seed, none);
    const SplitIndices picked =
        split_rows(labels->y, labels->num_classes, 0.2, true, SplitMethod::philox, rng_b, none);
    // The run is the one with the original labels; `other` reads the changed copy.
    auto r = data_reach(config, other.data, schedule);
    const bool same = picked.train == split.train && picked.test == split.test;
    EXPECT_EQ(r.ok(), same) << "row " << row << (r ? "" : ": " + r.error().message);
    (same ? compared : refused)++;
    if (r) {
      EXPECT_TRUE(r->labels);
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(compared, 0);
}

}  // namespace
}  // namespace trainrr
