// Which copy of the data a replay uses, and what a `data` cause says: `--data` is used even when the trace
// embeds the data (a wrong answer before: it was ignored), and with both copies at hand the cause names the
// first row and column that differ.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "engine/data/npy.h"
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
  EXPECT_TRUE(has(refused.output,
                  "first difference at line 6 (data row 4, counting from 0), column 3 'mean_perimeter': "))
      << refused.output;
  EXPECT_TRUE(has(refused.output, "pass --allow-data-change")) << refused.output;
  // bisect, which has no --allow-data-change, says what it needs instead.
  CommandResult bisect = run_trainrr("bisect " + trace() + " --data " + other);
  EXPECT_EQ(bisect.exit_code, 2) << bisect.output;
  EXPECT_TRUE(has(bisect.output,
                  "first difference at line 6 (data row 4, counting from 0), column 3 'mean_perimeter': "))
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

// A .npy file of float64 values written by hand: the header numpy writes, then the values.
void write_npy_f64(const std::string& path, const std::vector<double>& values, int64_t rows, int64_t cols) {
  std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                     std::to_string(cols) + "), }";
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(dict.size());
  out.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
  out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * 8));
}

// The recorded .npy file at its recorded path and a float64 copy of the same float32 values: the copy is the
// recorded data in other bytes, for replay --data and for diff alike, without the trace embedding either.
TEST(DataCopyNpy, AFloat64CopyOfTheRecordedValuesIsTheSameDataWithoutEmbedding) {
  TempDir dir;
  const int64_t rows = 64, cols = 3;
  Tensor x({rows, cols});
  std::vector<double> wide(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    x[i] = 0.37f * static_cast<float>(i % 17) - 2.5f;
    wide[static_cast<size_t>(i)] = static_cast<double>(x[i]);
  }
  Tensor y({rows});
  for (int64_t i = 0; i < rows; ++i) y[i] = static_cast<float>(i % 2);
  std::filesystem::create_directories(dir.file("a"));
  std::filesystem::create_directories(dir.file("b"));
  ASSERT_TRUE(write_npy(dir.file("a/x.npy"), x).ok());
  ASSERT_TRUE(write_npy(dir.file("a/y.npy"), y).ok());
  write_npy_f64(dir.file("b/x.npy"), wide, rows, cols);
  ASSERT_TRUE(write_npy(dir.file("b/y.npy"), y).ok());
  const std::string model =
      "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
      "[train]\nepochs = 1\nbatch_size = 16\nloss = \"binary_crossentropy\"\n"
      "[runtime]\nthreads = 1\npolicy = \"deterministic\"\n";
  for (const char* side : {"a", "b"}) {
    const std::string cfg = dir.write(std::string(side) + "/run.toml",
                                      "seed = 1\n[data]\npath = \"x.npy\"\nlabels = \"y.npy\"\n" + model);
    const CommandResult r = run_trainrr("record " + cfg + " -o " + dir.file(std::string(side) + ".trr"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const std::string same =
      "the arrays have other dtypes, float32 (recorded) vs float64 (now), and the same 192 "
      "values once converted to float32, as the run reads them";
  const CommandResult replayed =
      run_trainrr("replay " + dir.file("a.trr") + " --data " + dir.file("b/x.npy"));
  EXPECT_EQ(replayed.exit_code, 0) << replayed.output;
  EXPECT_TRUE(has(replayed.output, "holds the recorded data in other bytes: " + same)) << replayed.output;
  const CommandResult diffed = run_trainrr("diff " + dir.file("a.trr") + " " + dir.file("b.trr"));
  EXPECT_EQ(diffed.exit_code, 0) << diffed.output;
  EXPECT_TRUE(has(diffed.output, "identical: ")) << diffed.output;
  EXPECT_TRUE(has(diffed.output,
                  "in its bytes, not in what the runs read: the arrays have other dtypes, float32 "
                  "(A) vs float64 (B)"))
      << diffed.output;
}

}  // namespace
}  // namespace trainrr::testing
