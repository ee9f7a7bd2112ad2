#include "engine/data/idx.h"

#include <gtest/gtest.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "engine/data/test_files.h"

namespace trainrr {
namespace {

using trainrr::testing::not_regular_files;
using trainrr::testing::temp_file;
using trainrr::testing::write_temp;

std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s += static_cast<char>(b);
  return s;
}

// An IDX header built by hand: 00 00, type, rank, then each dimension as a big-endian uint32.
std::string idx_header(int type, std::initializer_list<uint32_t> dims) {
  std::string s = bytes({0, 0, type, static_cast<int>(dims.size())});
  for (uint32_t d : dims) s += bytes({int(d >> 24), int((d >> 16) & 0xFF), int((d >> 8) & 0xFF), int(d & 0xFF)});
  return s;
}

std::string idx_error(const std::string& b) {
  const std::string path = write_temp("bad.idx", b);
  Result<Tensor> r = read_idx(path);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.error().message.rfind(path + ":", 0), 0u) << r.error().message;
  return r.error().message;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(DataIdx, ReadsUnsignedByteImagesInCOrder) {
  std::string data;
  for (int i = 0; i < 12; ++i) data += static_cast<char>(i * 20);
  Result<Tensor> r = read_idx(write_temp("img.idx", idx_header(0x08, {2, 2, 3}) + data));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->shape, (Shape{2, 2, 3}));
  EXPECT_EQ((*r)[0], 0);
  EXPECT_EQ((*r)[5], 100);
  EXPECT_EQ((*r)[11], 220);
}

TEST(DataIdx, ReadsEveryTypeBigEndian) {
  struct Case {
    int type;
    std::string value;
    float expected;
  };
  const Case cases[] = {
      {0x08, bytes({0xFF}), 255},
      {0x09, bytes({0xFF}), -1},
      {0x0B, bytes({0xFF, 0xFE}), -2},
      {0x0C, bytes({0x00, 0x01, 0x00, 0x00}), 65536},
      {0x0D, bytes({0x3F, 0xC0, 0x00, 0x00}), 1.5f},
      {0x0E, bytes({0xC0, 0x04, 0, 0, 0, 0, 0, 0}), -2.5f},
  };
  for (const Case& c : cases) {
    Result<Tensor> r = read_idx(write_temp("one.idx", idx_header(c.type, {1}) + c.value));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->shape, (Shape{1}));
    EXPECT_EQ((*r)[0], c.expected) << "type " << c.type;
  }
}

std::string f8_big_endian(std::initializer_list<double> values) {
  std::string s;
  for (double v : values)
    for (int k = 7; k >= 0; --k) s += static_cast<char>((std::bit_cast<uint64_t>(v) >> (8 * k)) & 0xFF);
  return s;
}

TEST(DataIdx, Float64BeyondFloat32RangeIsRefusedWithItsRow) {
  // Two images of 1x2 values; the second holds 1e300.
  const std::string m = idx_error(idx_header(0x0E, {2, 1, 2}) + f8_big_endian({1, 2, 3, 1e300}));
  EXPECT_TRUE(contains(m, "bad.idx: row 1 holds 1e+300, which float32 cannot hold")) << m;
}

TEST(DataIdx, DatasetIsNhwcWithOneChannelAndRawValues) {
  const std::string images = write_temp("images.idx", idx_header(0x08, {3, 2, 2}) + std::string(12, '\x07'));
  const std::string labels = write_temp("labels.idx", idx_header(0x08, {3}) + bytes({4, 0, 9}));
  Result<Dataset> r = read_idx_dataset(images, labels);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->x.shape, (Shape{3, 2, 2, 1}));
  EXPECT_EQ(r->x[11], 7.0f);
  EXPECT_EQ(r->y, (std::vector<float>{4, 0, 9}));
  EXPECT_EQ(r->num_classes, 10);
}

TEST(DataIdx, DatasetRowCountsMustAgree) {
  const std::string images = write_temp("images.idx", idx_header(0x08, {3, 1, 1}) + std::string(3, '\0'));
  const std::string labels = write_temp("labels.idx", idx_header(0x08, {2}) + bytes({1, 2}));
  Result<Dataset> r = read_idx_dataset(images, labels);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, images)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, labels)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "3 images")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "2 labels")) << r.error().message;
}

TEST(DataIdx, DatasetRejectsLabelsThatAreNotOneDimensional) {
  const std::string images = write_temp("images.idx", idx_header(0x08, {2, 1, 1}) + std::string(2, '\0'));
  const std::string labels = write_temp("labels.idx", idx_header(0x08, {2, 1}) + bytes({1, 2}));
  Result<Dataset> r = read_idx_dataset(images, labels);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, labels)) << r.error().message;
}

TEST(DataIdx, BadMagicIsAnError) {
  EXPECT_TRUE(contains(idx_error(bytes({1, 0, 8, 1, 0, 0, 0, 1, 5})), "not an IDX file"));
  EXPECT_TRUE(contains(idx_error(""), "not an IDX file"));
}

TEST(DataIdx, GzipFileSaysToDecompress) {
  EXPECT_TRUE(contains(idx_error(bytes({0x1F, 0x8B, 8, 0, 0, 0})), "gunzip"));
}

TEST(DataIdx, UnknownTypeCodeIsAnError) {
  const std::string m = idx_error(idx_header(0x0A, {1}) + "x");
  EXPECT_TRUE(contains(m, "0x0A")) << m;
}

TEST(DataIdx, TruncatedDimensionsAreAnError) {
  const std::string m = idx_error(idx_header(0x08, {1, 2, 3}).substr(0, 10));
  EXPECT_TRUE(contains(m, "truncated")) << m;
}

TEST(DataIdx, TruncatedDataIsAnError) {
  const std::string m = idx_error(idx_header(0x0C, {2, 3}) + std::string(20, '\0'));
  EXPECT_TRUE(contains(m, "truncated")) << m;
  EXPECT_TRUE(contains(m, "needs 24 bytes")) << m;
}

TEST(DataIdx, TrailingBytesAreAnError) {
  EXPECT_TRUE(contains(idx_error(idx_header(0x08, {2}) + "abc"), "trailing bytes"));
}

TEST(DataIdx, ShapeFarLargerThanTheFileIsRefusedBeforeAllocating) {
  const std::string m = idx_error(idx_header(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}) + std::string(8, '\0'));
  EXPECT_TRUE(contains(m, "too large")) << m;
  const std::string m2 = idx_error(idx_header(0x08, {60000, 28, 28}) + std::string(100, '\0'));
  EXPECT_TRUE(contains(m2, "truncated")) << m2;
}

TEST(DataIdx, PathThatIsNotARegularFileIsRefusedForImagesAndLabels) {
  const std::string images = write_temp("images.idx", idx_header(0x08, {1, 1, 1}) + bytes({3}));
  const std::string labels = write_temp("labels.idx", idx_header(0x08, {1}) + bytes({1}));
  ASSERT_TRUE(read_idx_dataset(images, labels).ok());
  for (const std::string& path : not_regular_files()) {
    for (const auto& [x, y] : {std::pair{path, labels}, std::pair{images, path}}) {
      Result<Dataset> r = read_idx_dataset(x, y);
      ASSERT_FALSE(r.ok()) << path;
      EXPECT_EQ(r.error().message.rfind(path + ": not a regular file", 0), 0u) << r.error().message;
    }
  }
}

TEST(DataIdx, MissingFileNamesThePath) {
  const std::string path = temp_file("absent.idx");
  Result<Tensor> r = read_idx(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, path)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, std::strerror(ENOENT))) << r.error().message;
}

}  // namespace
}  // namespace trainrr
