#include "engine/data/csv.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "engine/data/test_files.h"

namespace trainrr {
namespace {

using trainrr::testing::not_regular_files;
using trainrr::testing::temp_file;
using trainrr::testing::write_temp;

// The error of reading `text` as a CSV with label `label`, after checking it names the file.
std::string csv_error(const std::string& text, const std::string& label = "label") {
  const std::string path = write_temp("data.csv", text);
  Result<Dataset> r = read_csv(path, label);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.error().message.rfind(path + ":", 0), 0u) << r.error().message;
  return r.error().message;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(DataCsv, LabelColumnIsChosenByNameAndTheRestAreFeatures) {
  const std::string path = write_temp("data.csv", "a,label,b\n1,0,2\n3,1,4\n5.5,1,-6\n");
  Result<Dataset> r = read_csv(path, "label");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.shape, (Shape{3, 2}));
  EXPECT_EQ(r->x.data, (std::vector<float>{1, 2, 3, 4, 5.5f, -6}));
  EXPECT_EQ(r->y, (std::vector<float>{0, 1, 1}));
  EXPECT_EQ(r->feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r->num_classes, 2);
}

TEST(DataCsv, AcceptsCrlfLineEndsAndNoFinalNewline) {
  const std::string path = write_temp("data.csv", "x,y\r\n1,0\r\n2,1");
  Result<Dataset> r = read_csv(path, "y");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.data, (std::vector<float>{1, 2}));
  EXPECT_EQ(r->y, (std::vector<float>{0, 1}));
}

TEST(DataCsv, AcceptsLoneCarriageReturnLineEnds) {
  const std::string path = write_temp("data.csv", "x,y\r1,0\r\r2,1\r\n3,0\n4,1\r");
  Result<Dataset> r = read_csv(path, "y");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.data, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(r->y, (std::vector<float>{0, 1, 0, 1}));
  EXPECT_TRUE(contains(csv_error("a,label\r1,0\r\rx,1\r"), "data.csv:4:1:"));
}

TEST(DataCsv, QuotedFieldsLoseTheirQuotesAndKeepTheirCommas) {
  const std::string path = write_temp(
      "data.csv", "\"radius, mean\",\"say \"\"hi\"\"\",\"label\"\n\"17.99\",\"2\",0\n 3 , \"4e1\" ,\"1\"\n");
  Result<Dataset> r = read_csv(path, "label");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->feature_names, (std::vector<std::string>{"radius, mean", "say \"hi\""}));
  EXPECT_EQ(r->x.data, (std::vector<float>{17.99f, 2, 3, 40}));
  EXPECT_EQ(r->y, (std::vector<float>{0, 1}));
}

TEST(DataCsv, QuotedCellThatIsNoNumberIsShownWithoutQuotesAtItsOpeningQuote) {
  const std::string m = csv_error("a,b,label\n1,\"x,y\",0\n");
  EXPECT_TRUE(contains(m, "data.csv:2:3:")) << m;
  EXPECT_TRUE(contains(m, "column \"b\": expected a number, found \"x,y\"")) << m;
}

TEST(DataCsv, QuotedFieldNotClosedOnItsLineNamesLineAndColumn) {
  const std::string m = csv_error("a,b,label\n1,2,0\n3,\"4,1\n5,6,0\n");
  EXPECT_TRUE(contains(m, "data.csv:3:3:")) << m;
  EXPECT_TRUE(contains(m, "not closed")) << m;
  const std::string h = csv_error("a,\"b,label\n1,2,0\n");
  EXPECT_TRUE(contains(h, "data.csv:1:3:")) << h;
  EXPECT_TRUE(contains(h, "not closed")) << h;
}

TEST(DataCsv, TextAfterAClosingQuoteIsAnError) {
  const std::string m = csv_error("a,label\n\"1\"2,0\n");
  EXPECT_TRUE(contains(m, "data.csv:2:4:")) << m;
  EXPECT_TRUE(contains(m, "after the closing quote")) << m;
}

// A file that may be anything (one a trace names that is not the recorded data): errors say where, never
// what the file holds.
TEST(DataCsv, WithoutQuotingErrorsRepeatNothingTheFileHolds) {
  for (const std::string& text :
       {std::string("root:x:0:0:root:/root:/bin/bash\nsecret:x:1:1::/:/bin/sh\n"),
        std::string("a,label\nsecret-cell,0\n"), std::string("a,label\n\"1\"secret,0\n")}) {
    const std::string path = write_temp("data.csv", text);
    Result<Dataset> r = read_csv(path, "label", false);
    ASSERT_FALSE(r.ok());
    const std::string& m = r.error().message;
    EXPECT_EQ(m.rfind(path + ":", 0), 0u) << m;
    EXPECT_FALSE(contains(m, "root")) << m;
    EXPECT_FALSE(contains(m, "secret")) << m;
  }
  const std::string path = write_temp("data.csv", "root:x:0:0:root:/root:/bin/bash\n");
  Result<Dataset> r = read_csv(path, "label", false);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message,
                       "data.csv:1:1: no column named \"label\" for the label (the header has 1 column; "
                       "their names are not shown"))
      << r.error().message;
  // Quoted as before otherwise.
  EXPECT_TRUE(contains(read_csv(path, "label").error().message, "the columns are: root:x:0:0:root"));
}

TEST(DataCsv, ParsesExponentsSignsAndSurroundingSpaces) {
  const std::string path = write_temp("data.csv", "x,z,y\n1e-3, -2.5E2 ,+3\n.25,1e-50,0.5\n");
  Result<Dataset> r = read_csv(path, "y");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.data, (std::vector<float>{0.001f, -250.0f, 0.25f, 0.0f}));
  EXPECT_EQ(r->y, (std::vector<float>{3, 0.5f}));
  EXPECT_EQ(r->num_classes, 0);  // 0.5 is no class index
}

TEST(DataCsv, SkipsBlankLinesAndAByteOrderMark) {
  const std::string path = write_temp("data.csv", "\xEF\xBB\xBFx,y\n1,0\n\n2,1\n\n");
  Result<Dataset> r = read_csv(path, "y");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->feature_names, (std::vector<std::string>{"x"}));
  EXPECT_EQ(r->rows(), 2);
}

TEST(DataCsv, RowWithTooFewFieldsNamesLineColumnAndCounts) {
  const std::string m = csv_error("a,b,label\n1,2,0\n3,4\n");
  EXPECT_TRUE(contains(m, "data.csv:3:4:")) << m;
  EXPECT_TRUE(contains(m, "expected 3 fields")) << m;
  EXPECT_TRUE(contains(m, "found 2")) << m;
}

TEST(DataCsv, RowWithTooManyFieldsPointsAtTheFirstExtraField) {
  const std::string m = csv_error("a,b,label\n1,2,0\n1,2,0\n10,20,1,99\n");
  EXPECT_TRUE(contains(m, "data.csv:4:9:")) << m;
  EXPECT_TRUE(contains(m, "expected 3 fields")) << m;
  EXPECT_TRUE(contains(m, "found 4")) << m;
}

TEST(DataCsv, NonNumberIsQuotedWithItsLineColumnAndColumnName) {
  const std::string m = csv_error("a,b,label\r\n1,2,0\r\n3,abc,1\r\n");
  EXPECT_TRUE(contains(m, "data.csv:3:3:")) << m;
  EXPECT_TRUE(contains(m, "\"abc\"")) << m;
  EXPECT_TRUE(contains(m, "column \"b\"")) << m;
}

TEST(DataCsv, NonNumericLabelIsAnError) {
  const std::string m = csv_error("a,label\n1,M\n");
  EXPECT_TRUE(contains(m, "data.csv:2:3:")) << m;
  EXPECT_TRUE(contains(m, "\"M\"")) << m;
}

TEST(DataCsv, EmptyFieldIsAnError) {
  const std::string m = csv_error("a,b,label\n1,,0\n");
  EXPECT_TRUE(contains(m, "data.csv:2:3:")) << m;
  EXPECT_TRUE(contains(m, "found \"\"")) << m;
}

TEST(DataCsv, NumberBeyondFloatRangeIsAnError) {
  const std::string m = csv_error("a,label\n1e999,0\n");
  EXPECT_TRUE(contains(m, "data.csv:2:1:")) << m;
  EXPECT_TRUE(contains(m, "float range")) << m;
}

TEST(DataCsv, NumberFollowedByTextIsAnError) {
  const std::string m = csv_error("a,label\n1.5x,0\n");
  EXPECT_TRUE(contains(m, "data.csv:2:1:")) << m;
  EXPECT_TRUE(contains(m, "\"1.5x\"")) << m;
}

TEST(DataCsv, MissingFileNamesThePathAndTheReason) {
  const std::string path = temp_file("absent.csv");
  Result<Dataset> r = read_csv(path, "label");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, path)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, std::strerror(ENOENT))) << r.error().message;
}

TEST(DataCsv, PathThatIsNotARegularFileIsRefused) {
  for (const std::string& path : not_regular_files()) {
    Result<Dataset> r = read_csv(path, "label");
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.error().message.rfind(path + ": not a regular file", 0), 0u) << r.error().message;
  }
}

TEST(DataCsv, EmptyFileIsAnEmptyDataSet) {
  const std::string m = csv_error("");
  EXPECT_TRUE(contains(m, "data.csv:1:1:")) << m;
  EXPECT_TRUE(contains(m, "empty")) << m;
}

TEST(DataCsv, HeaderWithoutRowsIsAnEmptyDataSet) {
  const std::string m = csv_error("a,b,label\n");
  EXPECT_TRUE(contains(m, "data.csv:2:1:")) << m;
  EXPECT_TRUE(contains(m, "empty")) << m;
}

TEST(DataCsv, UnknownLabelColumnListsTheColumns) {
  const std::string m = csv_error("alpha,beta,target\n1,2,0\n", "label");
  EXPECT_TRUE(contains(m, "data.csv:1:1:")) << m;
  EXPECT_TRUE(contains(m, "\"label\"")) << m;
  EXPECT_TRUE(contains(m, "alpha, beta, target")) << m;
}

// A misspelt or miscased label is matched to the column it is closest to; a short name is never taken for
// another short one.
TEST(DataCsv, UnknownLabelColumnNamesTheColumnItIsClosestTo) {
  EXPECT_TRUE(
      contains(csv_error("alpha,beta,target\n1,2,0\n", "targett"),
               "no column named \"targett\" for the label (did you mean \"target\"?); the columns are: "));
  EXPECT_TRUE(contains(csv_error("alpha,beta,Target\n1,2,0\n", "target"), "(did you mean \"Target\"?)"));
  EXPECT_FALSE(contains(csv_error("a,b,c\n1,2,0\n", "y"), "did you mean"));
  EXPECT_FALSE(contains(csv_error("alpha,beta,target\n1,2,0\n", "label"), "did you mean"));
}

TEST(DataCsv, UnknownLabelColumnInAHeaderOfOtherSeparatorsHintsAtCommas) {
  const std::string m = csv_error("alpha;beta;label\n1;2;0\n", "label");
  EXPECT_TRUE(contains(m, "data.csv:1:1: no column named \"label\"")) << m;
  EXPECT_TRUE(contains(m, "(the header has no commas but has ';': trainrr reads comma-separated files)"))
      << m;
  const std::string t = csv_error("alpha\tbeta\tlabel\n1\t2\t0\n", "label");
  EXPECT_TRUE(contains(t, "(the header has no commas but has tabs: trainrr reads comma-separated files)"))
      << t;
  const std::string c = csv_error("alpha;x,beta,target\n1,2,0\n", "label");
  EXPECT_FALSE(contains(c, "no commas")) << c;
}

TEST(DataCsv, UnknownLabelColumnAbbreviatesALongList) {
  std::string header, row;
  for (int i = 0; i < 40; ++i) {
    header += (i ? ",c" : "c") + std::to_string(i);
    row += i ? ",1" : "1";
  }
  const std::string m = csv_error(header + "\n" + row + "\n", "label");
  EXPECT_TRUE(contains(m, "c0, c1")) << m;
  EXPECT_TRUE(contains(m, "40 columns")) << m;
  EXPECT_TRUE(contains(m, "c39")) << m;
  EXPECT_FALSE(contains(m, "c20,")) << m;
}

TEST(DataCsv, LabelAsTheOnlyColumnIsAnError) {
  const std::string m = csv_error("label\n1\n");
  EXPECT_TRUE(contains(m, "data.csv:1:1:")) << m;
  EXPECT_TRUE(contains(m, "no feature columns")) << m;
}

TEST(DataCsv, BreastCancerLoadsWithItsShapeAndClassCounts) {
  Result<Dataset> r = read_csv(TRAINRR_SOURCE_DIR "/examples/data/breast_cancer.csv", "benign");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.shape, (Shape{569, 30}));
  EXPECT_EQ(r->feature_names.size(), 30u);
  EXPECT_EQ(r->feature_names.front(), "mean_radius");
  EXPECT_EQ(r->num_classes, 2);
  double benign = 0;
  for (float v : r->y) benign += v;
  EXPECT_EQ(benign, 357);  // 357 benign, 212 malignant (examples/data/README.md)
  EXPECT_EQ(r->x[0], 17.99f);
  EXPECT_EQ(r->x[1], 10.38f);
}

TEST(DataCsv, DigitsLoadsWithItsShapeAndTenClasses) {
  Result<Dataset> r = read_csv(TRAINRR_SOURCE_DIR "/examples/data/digits.csv", "digit");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.shape, (Shape{1797, 64}));
  EXPECT_EQ(r->num_classes, 10);
  std::vector<int> counts(10);
  for (float v : r->y) ++counts[static_cast<int>(v)];
  EXPECT_EQ(counts, (std::vector<int>{178, 182, 177, 183, 181, 182, 181, 179, 174, 180}));
  float hi = 0;
  for (float v : r->x.data) hi = std::max(hi, v);
  EXPECT_EQ(hi, 16.0f);
}

}  // namespace
}  // namespace trainrr
