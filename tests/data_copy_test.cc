// Which copy of the data a replay uses, and what a `data` cause says: `--data` is used even when the trace
// embeds the data (a wrong answer before: it was ignored), and with both copies at hand the cause names the
// first row and column that differ.

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "tests/test_util.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class DataCopy : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandResult r = run_trainrr("record " + example("breast_cancer.toml") + " --set train.epochs=1 --embed-data -o " +
                                  trace());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(example("data/breast_cancer.csv"), std::ios::binary);
    original_ = std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string trace() const { return dir.file("run.trr"); }
  // The data set with one value of its 5th data row (line 6) changed.
  std::string changed() const {
    std::string text = original_;
    size_t line = 0, at = 0;
    while (line < 5) at = text.find('\n', at) + 1, ++line;
    const size_t c1 = text.find(',', at), c2 = text.find(',', c1 + 1), c3 = text.find(',', c2 + 1);  // 3 commas
    EXPECT_NE(c3, std::string::npos);
    // The 3rd column (mean_perimeter) gets a digit more.
    text.insert(text.begin() + static_cast<std::ptrdiff_t>(std::min(c3, text.size())), '1');
    return dir.write("changed.csv", text);
  }
  TempDir dir;
  std::string original_;
};

TEST_F(DataCopy, DataGivenWithAnEmbeddedTraceIsUsedAndChecked) {
  CommandResult missing = run_trainrr("replay " + trace() + " --data " + dir.file("nonexistent.csv"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  // The path the user gave does not exist: said so, without advice to pass what was passed.
  EXPECT_TRUE(has(missing.output, "data file " + dir.file("nonexistent.csv") + " (--data) does not exist\n"))
      << missing.output;
  EXPECT_FALSE(has(missing.output, "pass --data") || has(missing.output, "--embed-data")) << missing.output;

  const std::string same = dir.write("same.csv", original_);
  CommandResult r = run_trainrr("replay " + trace() + " --data " + same);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "reproduced bit for bit")) << r.output;
  EXPECT_TRUE(has(r.output, "note: data: " + same + " (--data) is used in place of the copy the trace embeds"))
      << r.output;
}

TEST_F(DataCopy, DataGivenWithATraceThatDoesNotEmbedItIsNamedInTheReport) {
  const std::string plain = dir.file("plain.trr");
  CommandResult r =
      run_trainrr("record " + example("breast_cancer.toml") + " --set train.epochs=1 -o " + plain);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string same = dir.write("copy.csv", original_);
  r = run_trainrr("replay " + plain + " --data " + same);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "note: data: " + same + " (--data) is read in place of " +
                                example("data/breast_cancer.csv") + ", the file the run recorded"))
      << r.output;
}

TEST_F(DataCopy, ADataCauseNamesTheFirstRowAndColumnThatDiffer) {
  const std::string other = changed();
  CommandResult refused = run_trainrr("replay " + trace() + " --data " + other);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(has(refused.output, "first difference at line 6 (data row 5), column 3 'mean_perimeter': ")) << refused.output;
  EXPECT_TRUE(has(refused.output, "pass --allow-data-change")) << refused.output;
  // bisect, which has no --allow-data-change, says what it needs instead.
  CommandResult bisect = run_trainrr("bisect " + trace() + " --data " + other);
  EXPECT_EQ(bisect.exit_code, 2) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "first difference at line 6 (data row 5), column 3 'mean_perimeter': "))
      << bisect.output;
  EXPECT_TRUE(has(bisect.output,
                  "; bisect narrows a divergence of the run with the data it recorded: pass --data "
                  "with that file (trainrr replay --data PATH --allow-data-change shows what the "
                  "change does)"))
      << bisect.output;
  EXPECT_FALSE(has(bisect.output, "pass --allow-data-change")) << bisect.output;

  CommandResult r = run_trainrr("replay " + trace() + " --data " + other + " --allow-data-change --json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "\"category\":\"data\"")) << r.output;
  EXPECT_TRUE(has(r.output, "changed.csv (recorded as ")) << r.output;
  EXPECT_TRUE(has(r.output, "column 3 'mean_perimeter'")) << r.output;
}

}  // namespace
}  // namespace trainrr::testing
