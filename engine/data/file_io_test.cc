#include "engine/data/file_io.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "engine/data/test_files.h"

namespace trainrr {
namespace {

using trainrr::testing::not_regular_files;
using trainrr::testing::temp_file;

TEST(DataFileIo, WrittenBytesReadBackExactly) {
  const std::string path = temp_file("bytes");
  const std::string bytes("a\0b\r\n\xff", 6);
  ASSERT_TRUE(write_file_bytes(path, bytes).ok());
  Result<std::string> back = read_file_bytes(path);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, bytes);
}

TEST(DataFileIo, MissingFileNamesThePathAndTheSystemReason) {
  const std::string path = temp_file("does_not_exist");
  Result<std::string> r = read_file_bytes(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(std::strerror(ENOENT)), std::string::npos) << r.error().message;
}

TEST(DataFileIo, PathThatIsNotARegularFileIsRefusedSayingWhatItIs) {
  const std::vector<std::string> paths = not_regular_files();
  const char* kinds[] = {"a directory", "a named pipe", "a character device"};
  for (size_t i = 0; i < paths.size(); ++i) {
    Result<std::string> r = read_file_bytes(paths[i]);
    ASSERT_FALSE(r.ok()) << paths[i];
    EXPECT_EQ(r.error().message, paths[i] + ": not a regular file (it is " + kinds[i] + ")");
  }
}

TEST(DataFileIo, RegularFileReachedThroughASymbolicLinkIsRead) {
  const std::string target = temp_file("target");
  ASSERT_TRUE(write_file_bytes(target, "abc").ok());
  const std::string link = temp_file("link");
  std::filesystem::create_symlink(target, link);
  Result<std::string> r = read_file_bytes(link);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "abc");
}

TEST(DataFileIo, UnwritablePathIsAnError) {
  const std::string path = temp_file("no_such_dir") + "/file";
  Status s = write_file_bytes(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find(path), std::string::npos) << s.error().message;
}

TEST(DataFileIo, LoadsFollowTheStatedByteOrder) {
  const unsigned char b[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  EXPECT_EQ(load_be<uint32_t>(b), 0x01020304u);
  EXPECT_EQ(load_le<uint32_t>(b), 0x04030201u);
  EXPECT_EQ(load_be<uint16_t>(b), 0x0102u);
  EXPECT_EQ(load_le<uint64_t>(b), 0x0807060504030201ull);
  const unsigned char minus_two_be[] = {0xFF, 0xFE};
  EXPECT_EQ(load_be<int16_t>(minus_two_be), -2);
  const unsigned char one_and_half_be[] = {0x3F, 0xC0, 0x00, 0x00};
  EXPECT_EQ(load_be<float>(one_and_half_be), 1.5f);
  const unsigned char one_le[] = {0x00, 0x00, 0x80, 0x3F};
  EXPECT_EQ(load_le<float>(one_le), 1.0f);
}

TEST(DataFileIo, ArrayBytesRefusesShapesBeyondTheLimit) {
  uint64_t bytes = 7;
  const int64_t small[] = {3, 4};
  ASSERT_TRUE(array_bytes_within(small, 4, 48, bytes));
  EXPECT_EQ(bytes, 48u);
  EXPECT_FALSE(array_bytes_within(small, 4, 47, bytes));
  const int64_t huge[] = {int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_FALSE(array_bytes_within(huge, 8, UINT64_MAX, bytes));
  const int64_t empty[] = {int64_t{1} << 62, 0, int64_t{1} << 62};
  ASSERT_TRUE(array_bytes_within(empty, 8, 0, bytes));
  EXPECT_EQ(bytes, 0u);
  const int64_t negative[] = {2, -1};
  EXPECT_FALSE(array_bytes_within(negative, 4, UINT64_MAX, bytes));
}

}  // namespace
}  // namespace trainrr
