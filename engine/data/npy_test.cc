#include "engine/data/npy.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/data/test_files.h"

namespace trainrr {
namespace {

using trainrr::testing::not_regular_files;
using trainrr::testing::read_all;
using trainrr::testing::temp_file;
using trainrr::testing::write_temp;

// A .npy file written by hand: magic, version, little-endian header length, the dict padded with spaces and
// a newline to a multiple of 64 bytes (as numpy does), then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string b = "\x93NUMPY";
  b += static_cast<char>(major);
  b += '\0';
  const size_t len = header.size();
  for (size_t i = 0; i < prefix - 8; ++i) b += static_cast<char>((len >> (8 * i)) & 0xFF);
  return b + header + data;
}

std::string hex(std::initializer_list<int> bytes) {
  std::string s;
  for (int v : bytes) s += static_cast<char>(v);
  return s;
}

std::string npy_error(const std::string& bytes) {
  const std::string path = write_temp("bad.npy", bytes);
  Result<Tensor> r = read_npy(path);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.error().message.rfind(path + ":", 0), 0u) << r.error().message;
  return r.error().message;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(DataNpy, ReadsHandWrittenFloat32) {
  // 1.0, 2.0, -0.5, 3.25 as little-endian IEEE-754 single precision.
  const std::string data = hex({0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40,  //
                                0x00, 0x00, 0x00, 0xBF, 0x00, 0x00, 0x50, 0x40});
  const std::string path =
      write_temp("f4.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", data));
  Result<Tensor> r = read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->shape, (Shape{2, 2}));
  EXPECT_EQ(r->data, (std::vector<float>{1.0f, 2.0f, -0.5f, 3.25f}));
}

TEST(DataNpy, ReadsFloat64InFormatVersion2) {
  // 1.5 and -2.0 as little-endian doubles; keys in another order than numpy writes them.
  const std::string data = hex({0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0, 0, 0, 0, 0, 0, 0, 0xC0});
  const std::string path =
      write_temp("f8.npy", npy_bytes("{'shape': (2,), 'fortran_order': False, 'descr': '<f8'}", data, 2));
  Result<Tensor> r = read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->shape, (Shape{2}));
  EXPECT_EQ(r->data, (std::vector<float>{1.5f, -2.0f}));
}

std::string f8_bytes(std::initializer_list<double> values) {
  std::string s;
  for (double v : values)
    for (int k = 0; k < 8; ++k) s += static_cast<char>((std::bit_cast<uint64_t>(v) >> (8 * k)) & 0xFF);
  return s;
}

TEST(DataNpy, Float64BeyondFloat32RangeIsRefusedWithItsRow) {
  const std::string m = npy_error(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }",
                                            f8_bytes({1, 2, 3, 4, 5, 1e300})));
  EXPECT_TRUE(contains(m, "bad.npy: row 2 holds 1e+300, which float32 cannot hold")) << m;
  const std::string v = npy_error(
      npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", f8_bytes({0, -1e39, 0})));
  EXPECT_TRUE(contains(v, "bad.npy: row 1 holds -1e+39, which float32 cannot hold")) << v;
}

TEST(DataNpy, Float64AtTheEdgesOfFloat32RangeIsRead) {
  // The largest float32, an infinity that the file does hold (reported later, as every non-finite value) and
  // a value too small for float32, which rounds to 0 as in the CSV reader.
  const double big = std::numeric_limits<float>::max();
  const double inf = std::numeric_limits<double>::infinity();
  Result<Tensor> r =
      read_npy(write_temp("edge.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                                                f8_bytes({big, -inf, 1e-300}))));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->data, (std::vector<float>{std::numeric_limits<float>::max(),
                                         -std::numeric_limits<float>::infinity(), 0}));
}

TEST(DataNpy, ReadsIntegerDtypesAsFloats) {
  const std::string i4 = hex({0xFE, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x00, 0x00});  // -2, 256
  Result<Tensor> a = read_npy(
      write_temp("i4.npy", npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }", i4)));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->data, (std::vector<float>{-2, 256}));

  const std::string i8 = hex({0x07, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});  // 7, -1
  Result<Tensor> b = read_npy(
      write_temp("i8.npy", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }", i8)));
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->data, (std::vector<float>{7, -1}));

  const std::string u1 = hex({0, 128, 255});
  Result<Tensor> c = read_npy(
      write_temp("u1.npy", npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", u1)));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->data, (std::vector<float>{0, 128, 255}));
}

TEST(DataNpy, ReadsAScalarAndAnEmptyArray) {
  Result<Tensor> s = read_npy(write_temp(
      "scalar.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", hex({0, 0, 0x80, 0x3F}))));
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->shape, Shape{});
  EXPECT_EQ(s->data, (std::vector<float>{1.0f}));
  Result<Tensor> e =
      read_npy(write_temp("empty.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", "")));
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->shape, (Shape{0, 5}));
  EXPECT_EQ(e->size(), 0);
}

TEST(DataNpy, WriteProducesNumpysVersion1LayoutWith64ByteAlignedHeader) {
  const std::string path = temp_file("out.npy");
  ASSERT_TRUE(write_npy(path, Tensor({2, 3}, {1, 2, 3, 4, 5, 6})).ok());
  const std::string b = read_all(path);
  const std::string expected_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  // 10 bytes of prefix + 59 of dict + newline exceed 64, so the data starts at 128 (header length 118, as numpy
  // writes for small arrays).
  ASSERT_EQ(b.size(), 128u + 6 * 4);
  EXPECT_EQ(b.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(b[8]) | static_cast<unsigned char>(b[9]) << 8, 118);
  EXPECT_EQ(b.substr(10, expected_dict.size()), expected_dict);
  EXPECT_EQ(b.substr(10 + expected_dict.size(), 128 - 11 - expected_dict.size()),
            std::string(128 - 11 - expected_dict.size(), ' '));
  EXPECT_EQ(b[127], '\n');
  EXPECT_EQ(b.substr(128, 4), hex({0, 0, 0x80, 0x3F}));  // 1.0f, little-endian
  EXPECT_EQ(b.substr(128 + 20, 4), hex({0, 0, 0xC0, 0x40}));  // 6.0f
}

TEST(DataNpy, WriteOfOneDimensionKeepsPythonsTupleComma) {
  const std::string path = temp_file("out.npy");
  ASSERT_TRUE(write_npy(path, Tensor({5})).ok());
  EXPECT_TRUE(contains(read_all(path), "'shape': (5,), }"));
}

TEST(DataNpy, RoundTripKeepsShapeAndEveryBit) {
  Tensor t({3, 1, 4});
  const float specials[] = {0.0f, -0.0f, 1e-45f, -3.5f, std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  for (int64_t i = 0; i < t.size(); ++i) t[i] = i < 7 ? specials[i] : std::ldexp(static_cast<float>(i), -7);
  const std::string path = temp_file("rt.npy");
  ASSERT_TRUE(write_npy(path, t).ok());
  Result<Tensor> r = read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->shape, t.shape);
  ASSERT_EQ(r->size(), t.size());
  for (int64_t i = 0; i < t.size(); ++i)
    EXPECT_EQ(std::bit_cast<uint32_t>((*r)[i]), std::bit_cast<uint32_t>(t[i])) << "element " << i;
}

TEST(DataNpy, BadMagicIsAnError) {
  EXPECT_TRUE(contains(npy_error("PK\x03\x04 this is a zip file"), "not a .npy file"));
  EXPECT_TRUE(contains(npy_error(""), "not a .npy file"));
}

TEST(DataNpy, UnsupportedVersionIsAnError) {
  std::string b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", hex({0, 0, 0, 0}));
  b[6] = 3;
  EXPECT_TRUE(contains(npy_error(b), "version 3.0"));
}

TEST(DataNpy, HeaderLengthBeyondTheFileIsAnError) {
  std::string b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "");
  b[8] = '\xFF';
  b[9] = '\xFF';
  EXPECT_TRUE(contains(npy_error(b), "truncated"));
  EXPECT_TRUE(contains(npy_error(b.substr(0, 9)), "not a .npy file"));
}

TEST(DataNpy, TruncatedDataIsAnError) {
  const std::string m = npy_error(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", std::string(12, '\0')));
  EXPECT_TRUE(contains(m, "truncated")) << m;
  EXPECT_TRUE(contains(m, "needs 16 bytes")) << m;
  EXPECT_TRUE(contains(m, "has 12")) << m;
}

TEST(DataNpy, TrailingBytesAreAnError) {
  const std::string m =
      npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", std::string(5, '\0')));
  EXPECT_TRUE(contains(m, "trailing bytes")) << m;
}

TEST(DataNpy, ShapeFarLargerThanTheFileIsRefusedBeforeAllocating) {
  const std::string m = npy_error(npy_bytes(
      "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 100000000000), }", std::string(8, '\0')));
  EXPECT_TRUE(contains(m, "too large")) << m;
  const std::string m2 = npy_error(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000,), }", std::string(8, '\0')));
  EXPECT_TRUE(contains(m2, "truncated")) << m2;
  const std::string m3 = npy_error(npy_bytes(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", std::string(8, '\0')));
  EXPECT_TRUE(contains(m3, "too large")) << m3;
}

TEST(DataNpy, FortranOrderIsAnError) {
  const std::string m =
      npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }", std::string(4, '\0')));
  EXPECT_TRUE(contains(m, "Fortran order")) << m;
}

TEST(DataNpy, UnsupportedDtypeSaysWhichAreSupported) {
  const std::string m =
      npy_error(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  EXPECT_TRUE(contains(m, "'>f4'")) << m;
  EXPECT_TRUE(contains(m, "<f4")) << m;
}

TEST(DataNpy, MalformedHeaderNamesTheByteOffset) {
  const std::string m =
      npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", std::string(4, '\0')));
  EXPECT_TRUE(contains(m, "malformed header")) << m;
  EXPECT_TRUE(contains(m, "byte 60")) << m;  // the '[': 10 bytes of prefix + 50 into the dict
  EXPECT_TRUE(contains(npy_error(npy_bytes("{'descr': '<f4', 'shape': (1,)}", std::string(4, '\0'))),
                       "lacks"));
  EXPECT_TRUE(contains(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", "")),
                       "malformed header"));
}

TEST(DataNpy, PathThatIsNotARegularFileIsRefused) {
  for (const std::string& path : not_regular_files()) {
    Result<Tensor> r = read_npy(path);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.error().message.rfind(path + ": not a regular file", 0), 0u) << r.error().message;
  }
}

TEST(DataNpy, MissingFileNamesThePath) {
  const std::string path = temp_file("absent.npy");
  Result<Tensor> r = read_npy(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, path)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, std::strerror(ENOENT))) << r.error().message;
}

}  // namespace
}  // namespace trainrr
