#include "replayer/data_difference.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace trainrr {
namespace {

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

TEST(DataDifference, CsvNamesTheLineTheDataRowAndTheColumnByItsHeader) {
  const std::string a = "y,mean radius,mean area\n1,2.5,551.1\n0,3.5,600\n";
  EXPECT_EQ(first_data_difference(bytes(a), a, true), "");
  EXPECT_EQ(first_data_difference(bytes(a), "y,mean radius,mean area\n1,2.5,551.1\n0,3.5,601\n", true),
            "first difference at line 3 (data row 2), column 3 'mean area': 600 (recorded) vs 601 (now)");
  EXPECT_EQ(first_data_difference(bytes(a), "y,mean radius,mean area\n1,2.5,551.1\n", true),
            "first difference at line 3 (data row 2): a row only the recorded copy has");
  EXPECT_EQ(first_data_difference(bytes(a), "y,radius,mean area\n1,2.5,551.1\n0,3.5,600\n", true),
            "first difference at line 1 (the header), column 2: mean radius (recorded) vs radius (now)");
  // Windows line endings alone are not a difference of values.
  EXPECT_EQ(first_data_difference(bytes(a), "y,mean radius,mean area\r\n1,2.5,551.1\r\n0,3.5,600\r\n", true),
            "the values are the same: only line endings or spaces at the ends of lines differ");
}

TEST(DataDifference, OtherFilesNameTheFirstDifferingByte) {
  EXPECT_EQ(first_data_difference(bytes("\x93NUMPY\x01"), std::string("\x93NUMPY\x02"), false),
            "first difference at byte 6 (7 bytes recorded, 7 now)");
  EXPECT_EQ(first_data_difference(bytes("a,b\n1,2\n"), "a,b\n1,3\n", true, "A", "B"),
            "first difference at line 2 (data row 1), column 2 'b': 2 (A) vs 3 (B)");
}

}  // namespace
}  // namespace trainrr
