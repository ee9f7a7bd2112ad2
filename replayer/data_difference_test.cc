#include "replayer/data_difference.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace trainrr {
namespace {

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// A .npy file of `values` as numpy.save writes it, in `descr` ("<f4" or "<f8"), of shape (rows, cols).
template <class T>
std::string npy(const std::string& descr, const std::vector<T>& values, int rows, int cols) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + std::to_string(rows) +
                     ", " + std::to_string(cols) + "), }";
  dict.append(64 - (10 + dict.size() + 1) % 64, ' ');
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xFF);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);  // little-endian hosts
  return out;
}

TEST(DataDifference, CsvNamesTheLineTheDataRowAndTheColumnByItsHeader) {
  const std::string a = "y,mean radius,mean area\n1,2.5,551.1\n0,3.5,600\n";
  EXPECT_EQ(first_data_difference(bytes(a), a, true).where, "");
  EXPECT_EQ(first_data_difference(bytes(a), "y,mean radius,mean area\n1,2.5,551.1\n0,3.5,601\n", true).where,
            "first difference at line 3 (data row 1, counting from 0), column 3 'mean area': 600 (recorded) "
            "vs 601 (now)");
  EXPECT_EQ(first_data_difference(bytes(a), "y,mean radius,mean area\n1,2.5,551.1\n", true).where,
            "first difference at line 3 (data row 1, counting from 0): a row only the recorded copy has");
  EXPECT_EQ(first_data_difference(bytes(a), "y,radius,mean area\n1,2.5,551.1\n0,3.5,600\n", true).where,
            "first difference at line 1 (the header), column 2: mean radius (recorded) vs radius (now)");
  // Windows line endings alone are not a difference of values.
  EXPECT_EQ(
      first_data_difference(bytes(a), "y,mean radius,mean area\r\n1,2.5,551.1\r\n0,3.5,600\r\n", true).where,
      "the rows hold the same text: only line endings, blank lines, a byte-order mark or spaces at the ends "
      "of "
      "lines differ");
}

// Rows are counted as the reader counts them: a blank line holds none, a byte-order mark is no part of the
// header; where the copies hold a row on other lines, each copy's line is named.
TEST(DataDifference, CsvRowsAreCountedAsTheReaderCountsThem) {
  const std::string a = "y,r\n\n1,2.5\n0,3.5\n1,4.5\n";
  EXPECT_EQ(
      first_data_difference(bytes(a), "y,r\n\n1,2.5\n0,3.5\n1,4.6\n", true).where,
      "first difference at line 5 (data row 2, counting from 0), column 2 'r': 4.5 (recorded) vs 4.6 (now)");
  EXPECT_EQ(first_data_difference(bytes(a), "y,r\n1,2.5\n0,3.5\n1,4.6\n", true).where,
            "first difference at line 5 (recorded), 4 (now) (data row 2, counting from 0), column 2 'r': 4.5 "
            "(recorded) vs 4.6 (now)");
  EXPECT_EQ(first_data_difference(bytes(a), "\xEF\xBB\xBFy,r\n1,2.5\n0,3.5\n1,4.6\n", true).where,
            "first difference at line 5 (recorded), 4 (now) (data row 2, counting from 0), column 2 'r': 4.5 "
            "(recorded) vs 4.6 (now)");
}

// Copies the run reads the same values from (other line endings, blank lines, a byte-order mark, quoting) are
// the same data, as .npy copies of the same values are; given the label column, the rows are read as the run
// reads them.
TEST(DataDifference, CsvCopiesOfTheSameValuesAreTheSameData) {
  const std::string a = "y,r\n1,2.5\n0,3.5\n";
  for (const std::string& same :
       {std::string("y,r\r\n1,2.5\r\n0,3.5\r\n"), std::string("y,r\n1,2.5\n\n0,3.5\n"),
        std::string("\xEF\xBB\xBFy,r\n1,2.5\n0,3.5\n"), std::string("\"y\",r\n1,\"2.5\"\n0,3.50\n")}) {
    const DataDifference d = first_data_difference(bytes(a), same, true, "recorded", "now", "y", "y");
    EXPECT_TRUE(d.same_values) << same;
    EXPECT_EQ(
        d.where,
        "the rows hold the same values, as the run reads them (every feature and label, bit for bit): the "
        "files differ in their text alone");
  }
  EXPECT_FALSE(
      first_data_difference(bytes(a), "y,r\n1,2.5\n0,3.6\n", true, "recorded", "now", "y", "y").same_values);
  // Without the labels, the text is compared: not the same data.
  EXPECT_FALSE(first_data_difference(bytes(a), "y,r\r\n1,2.5\r\n0,3.5\r\n", true).same_values);
  // The label column moved: the same data.
  EXPECT_TRUE(
      first_data_difference(bytes(a), "r,y\n2.5,1\n3.5,0\n", true, "recorded", "now", "y", "y").same_values);
  // Each copy read with its run's label: a copy whose run reads another column as the label is other data.
  EXPECT_FALSE(first_data_difference(bytes(a), a, true, "recorded", "now", "y", "r").same_values);
}

// Read as the runs read them, the first value that differs is named by the line of its row in each copy,
// past cells spelled otherwise (14.34 and 14.34000000001 are one float32), quoting, tabs and lone carriage
// returns.
TEST(DataDifference, CsvCopiesThatDifferNameTheFirstValueTheRunsReadOtherwise) {
  const std::string a = "x,y\n14.34,1\n2,0\n3,1\n";
  EXPECT_EQ(first_data_difference(bytes(a), "\"x\",y\n14.34000000001,1\n\t\n2,0\n3.5,1\n", true, "recorded",
                                  "now", "y", "y")
                .where,
            "first difference at line 4 (recorded), 5 (now) (data row 2, counting from 0), column 1 'x': 3 "
            "(recorded) vs 3.5 (now)");
  EXPECT_EQ(
      first_data_difference(bytes(a), "x,y\r14.34,1\r2,0\r3,0\r", true, "recorded", "now", "y", "y").where,
      "first difference at line 4 (data row 2, counting from 0), the label ('y'): 1 (recorded) vs 0 (now)");
  EXPECT_EQ(first_data_difference(bytes(a), a + "4,0\n", true, "recorded", "now", "y", "y").where,
            "first difference at line 5 (data row 3, counting from 0): a row only the now copy has");
  // A quoted name with a comma in it is one column.
  EXPECT_EQ(
      first_data_difference(bytes("\"a,x\",y,b\n1,0,2\n"), "\"a,x\",y,b\n1,0,3\n", true, "recorded", "now",
                            "y", "y")
          .where,
      "first difference at line 2 (data row 0, counting from 0), column 3 'b': 2 (recorded) vs 3 (now)");
  // Text alone (no label given): a lone carriage return ends a line, a line of a tab is blank.
  EXPECT_EQ(first_data_difference(bytes(a), "x,y\r\t\r14.34,1\r2,0\r3,0\r", true).where,
            "first difference at line 4 (recorded), 5 (now) (data row 2, counting from 0), column 2 'y': 1 "
            "(recorded) vs 0 (now)");
}

TEST(DataDifference, OtherFilesNameTheFirstDifferingByte) {
  EXPECT_EQ(first_data_difference(bytes("\x93NUMPY\x01"), std::string("\x93NUMPY\x02"), false).where,
            "first difference at byte 6 (7 bytes recorded, 7 now)");
  EXPECT_EQ(first_data_difference(bytes("a,b\n1,2\n"), "a,b\n1,3\n", true, "A", "B").where,
            "first difference at line 2 (data row 0, counting from 0), column 2 'b': 2 (A) vs 3 (B)");
}

// float64 values that convert to the float32 ones recorded: other bytes, the same data as the run reads it.
TEST(DataDifference, NpyArraysOfOtherDtypesWithTheSameFloat32ValuesAreTheSameData) {
  const std::string f4 = npy<float>("<f4", {0.1f, 2.5f, -3.0f, 1e-3f}, 2, 2);
  const std::string f8 = npy<double>("<f8", {0.1, 2.5, -3.0, 1e-3}, 2, 2);
  const DataDifference same = first_data_difference(bytes(f4), f8, false);
  EXPECT_TRUE(same.same_values);
  EXPECT_EQ(same.where,
            "the arrays have other dtypes, float32 (recorded) vs float64 (now), and the same 4 values once "
            "converted to float32, as the run reads them");
  const DataDifference other =
      first_data_difference(bytes(f4), npy<double>("<f8", {0.1, 2.5, -3.0, 2e-3}, 2, 2), false);
  EXPECT_FALSE(other.same_values);
  EXPECT_EQ(
      other.where,
      "the arrays have other dtypes, float32 (recorded) vs float64 (now); converted to float32, as the run "
      "reads them, first difference at row 1, element 1 of the row (counting from 0): 0.001 (recorded) vs "
      "0.002 (now)");
  const DataDifference shape =
      first_data_difference(bytes(f4), npy<double>("<f8", {0.1, 2.5, -3.0, 1e-3}, 1, 4), false);
  EXPECT_FALSE(shape.same_values);
  EXPECT_EQ(
      shape.where,
      "the arrays have other shapes: (2, 2) (recorded) vs (1, 4) (now), and other dtypes, float32 (recorded) "
      "vs float64 (now)");
  // The same dtype and values, another header (format version 2.0): still the same data.
  std::string v2 = f4;
  v2[6] = '\x02';
  v2.insert(10, 2, '\0');
  EXPECT_TRUE(first_data_difference(bytes(f4), v2, false).same_values);
  EXPECT_EQ(first_data_difference(bytes(f4), v2, false).where,
            "the arrays hold the same values, of one dtype (float32): only their .npy headers differ");
  // Two float64 arrays of other values that round to the same float32 values: the run reads the same data,
  // from other values.
  const DataDifference rounded =
      first_data_difference(bytes(f8), npy<double>("<f8", {0.1 + 1e-12, 2.5, -3.0, 1e-3}, 2, 2), false);
  EXPECT_TRUE(rounded.same_values);
  EXPECT_EQ(rounded.where,
            "the arrays hold other float64 values, and the same 4 values once converted to float32, as the "
            "run reads them");
  // An array the run cannot read (big-endian) is said to be one, not told by its first differing byte.
  std::string big = f4;
  big.replace(big.find("<f4"), 3, ">f4");
  const DataDifference unreadable = first_data_difference(bytes(f4), big, false);
  EXPECT_FALSE(unreadable.same_values);
  EXPECT_EQ(unreadable.where.rfind("now cannot be read as the run reads it: ", 0), 0u) << unreadable.where;
}

}  // namespace
}  // namespace trainrr
