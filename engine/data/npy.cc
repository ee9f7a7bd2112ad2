#include "engine/data/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/data/file_io.h"

namespace trainrr {
namespace {

constexpr std::string_view kMagic("\x93NUMPY", 6);
constexpr int kMaxRank = 32;  // numpy's own limit

enum class Dtype { f4, f8, i4, i8, u1 };

struct Header {
  std::string descr;
  bool fortran_order = false;
  Shape shape;
  bool have_descr = false, have_order = false, have_shape = false;
};

// The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
// A tiny parser for exactly that grammar; `base` is the header's offset in the file, for messages.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, size_t base) : s_(text), base_(base) {}

  bool parse(Header& h) {
    skip_space();
    if (!eat('{')) return fail("expected '{' opening the header dict");
    for (;;) {
      skip_space();
      if (eat('}')) break;
      std::string key;
      if (!string_literal(key)) return fail("expected a quoted key in the header dict");
      skip_space();
      if (!eat(':')) return fail("expected ':' after '" + key + "'");
      skip_space();
      if (key == "descr") {
        if (!string_literal(h.descr)) return fail("expected a quoted dtype for 'descr'");
        h.have_descr = true;
      } else if (key == "fortran_order") {
        if (word("True")) h.fortran_order = true;
        else if (word("False")) h.fortran_order = false;
        else return fail("expected True or False for 'fortran_order'");
        h.have_order = true;
      } else if (key == "shape") {
        if (!tuple(h.shape)) return false;
        h.have_shape = true;
      } else {
        return fail("unexpected key '" + key + "' (a .npy header has 'descr', 'fortran_order', 'shape')");
      }
      skip_space();
      if (eat(',')) continue;
      skip_space();
      if (eat('}')) break;
      return fail("expected ',' or '}' in the header dict");
    }
    skip_space();
    if (pos_ != s_.size()) return fail("unexpected text after the header dict");
    if (!h.have_descr || !h.have_order || !h.have_shape)
      return fail("the header dict lacks 'descr', 'fortran_order' or 'shape'");
    return true;
  }

  const std::string& error() const { return error_; }

 private:
  bool fail(const std::string& what) {
    error_ = "byte " + std::to_string(base_ + pos_) + ": " + what;
    return false;
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }
  bool word(std::string_view w) {
    if (s_.substr(pos_).starts_with(w)) return pos_ += w.size(), true;
    return false;
  }
  bool string_literal(std::string& out) {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return false;
    const char quote = s_[pos_];
    const size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) return false;
    out = std::string(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return true;
  }
  bool tuple(Shape& shape) {
    if (!eat('(')) return fail("expected a tuple '(...)' for 'shape'");
    for (;;) {
      skip_space();
      if (eat(')')) return true;
      if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9')
        return fail("expected a non-negative integer in 'shape'");
      int64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (v > (INT64_MAX - 9) / 10) return fail("a dimension in 'shape' is too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      eat('L');  // written by Python 2
      if (shape.size() == kMaxRank) return fail("'shape' has more than 32 dimensions");
      shape.push_back(v);
      skip_space();
      if (eat(')')) return true;
      if (!eat(',')) return fail("expected ',' or ')' in 'shape'");
    }
  }

  std::string_view s_;
  size_t base_;
  size_t pos_ = 0;
  std::string error_;
};

bool parse_dtype(const std::string& descr, Dtype& t, size_t& item) {
  if (descr == "<f4") return t = Dtype::f4, item = 4, true;
  if (descr == "<f8") return t = Dtype::f8, item = 8, true;
  if (descr == "<i4") return t = Dtype::i4, item = 4, true;
  if (descr == "<i8") return t = Dtype::i8, item = 8, true;
  if (descr == "|u1" || descr == "<u1") return t = Dtype::u1, item = 1, true;
  return false;
}

template <class T>
void convert(const unsigned char* p, std::vector<float>& out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(load_le<T>(p + i * sizeof(T)));
}

std::string header_text(const Shape& shape) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  return "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
}

}  // namespace

Result<Tensor> read_npy(const std::string& path) {
  Result<std::string> file = read_file_bytes(path);
  if (!file) return file.error();
  return parse_npy(*file, path);
}

namespace {

// The header of a .npy file's bytes `b`, its dtype and where its data starts; an error names `path`.
Status read_header(std::string_view b, const std::string& path, Header& h, Dtype& dtype, size_t& item,
                   size_t& data_at) {
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  auto err = [&](const std::string& what) { return Error{path + ": " + what}; };

  if (b.size() < 10 || std::string_view(b).substr(0, 6) != kMagic)
    return err("not a .npy file (it does not start with \\x93NUMPY)");
  const int major = u[6], minor = u[7];
  size_t header_at, header_len;
  if (major == 1 && minor == 0) {
    header_at = 10;
    header_len = load_le<uint16_t>(u + 8);
  } else if (major == 2 && minor == 0) {
    if (b.size() < 12) return err("truncated: the file ends inside the header length");
    header_at = 12;
    header_len = load_le<uint32_t>(u + 8);
  } else {
    return err(".npy format version " + std::to_string(major) + "." + std::to_string(minor) +
               " is not supported (1.0 and 2.0 are); save with numpy.save");
  }
  if (header_len > b.size() - header_at)
    return err("truncated: the header claims " + std::to_string(header_len) + " bytes, the file has " +
               std::to_string(b.size() - header_at) + " after the header length");

  HeaderParser parser(std::string_view(b).substr(header_at, header_len), header_at);
  if (!parser.parse(h)) return err("malformed header: " + parser.error());
  if (!parse_dtype(h.descr, dtype, item))
    return err("dtype '" + h.descr +
               "' is not supported (little-endian <f4, <f8, <i4, <i8 and |u1 are); convert with "
               "arr.astype('<f4')");
  if (h.fortran_order)
    return err("the array is in Fortran order; save it in C order (numpy.ascontiguousarray) instead");

  data_at = header_at + header_len;
  return {};
}

}  // namespace

std::string npy_dtype_name(std::string_view bytes) {
  Header h;
  Dtype dtype;
  size_t item, data_at;
  if (!read_header(bytes, "", h, dtype, item, data_at)) return "";
  switch (dtype) {
    case Dtype::f4:
      return "float32";
    case Dtype::f8:
      return "float64";
    case Dtype::i4:
      return "int32";
    case Dtype::i8:
      return "int64";
    case Dtype::u1:
      return "uint8";
  }
  return "";
}

Result<Tensor> parse_npy(std::string_view b, const std::string& path) {
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  auto err = [&](const std::string& what) { return Error{path + ": " + what}; };
  Header h;
  Dtype dtype;
  size_t item, data_at;
  if (Status s = read_header(b, path, h, dtype, item, data_at); !s) return s.error();
  const uint64_t have = b.size() - data_at;
  uint64_t need;
  if (!array_bytes_within(h.shape, item, have, need) || need != have) {
    const std::string shape = shape_str(h.shape) + " of " + h.descr;
    if (!array_bytes_within(h.shape, item, UINT64_MAX, need))
      return err("shape " + shape + " is too large for any file");
    return err((need > have ? "truncated: shape " : "trailing bytes: shape ") + shape + " needs " +
               std::to_string(need) + " bytes of data, the file has " + std::to_string(have));
  }

  Tensor t;
  t.shape = h.shape;
  t.data.resize(need / item);
  const unsigned char* p = u + data_at;
  switch (dtype) {
    case Dtype::f4: convert<float>(p, t.data); break;
    case Dtype::f8: {
      std::string problem;
      if (!float64_to_float32(p, std::endian::little, t.shape, t.data, problem)) return err(problem);
      break;
    }
    case Dtype::i4: convert<int32_t>(p, t.data); break;
    case Dtype::i8: convert<int64_t>(p, t.data); break;
    case Dtype::u1: convert<uint8_t>(p, t.data); break;
  }
  return t;
}

Status write_npy(const std::string& path, const Tensor& t) {
  TRAINRR_CHECK(shape_size(t.shape) == t.size(), "tensor shape " + shape_str(t.shape));
  std::string header = header_text(t.shape);
  // numpy pads with spaces and ends with a newline so that the data starts 64-byte aligned.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  TRAINRR_CHECK(header.size() <= 0xFFFF, "header too long for format 1.0");

  std::string head(kMagic);
  head += '\x01';
  head += '\x00';
  head += static_cast<char>(header.size() & 0xFF);
  head += static_cast<char>(header.size() >> 8);
  head += header;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!f) return Error{path + ": cannot create: " + std::strerror(errno)};
  bool ok = std::fwrite(head.data(), 1, head.size(), f.get()) == head.size();
  // The values little-endian, a piece at a time: the file is never held in memory beside the tensor.
  std::vector<char> piece;
  constexpr size_t kPiece = size_t{1} << 18;
  for (size_t from = 0; ok && from < t.data.size(); from += kPiece) {
    const size_t n = std::min(kPiece, t.data.size() - from);
    piece.resize(4 * n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t w = std::bit_cast<uint32_t>(t.data[from + i]);
      for (int k = 0; k < 4; ++k) piece[4 * i + k] = static_cast<char>((w >> (8 * k)) & 0xFF);
    }
    ok = std::fwrite(piece.data(), 1, piece.size(), f.get()) == piece.size();
  }
  const bool closed = std::fclose(f.release()) == 0;
  if (!ok || !closed) return Error{path + ": cannot write: " + std::strerror(errno)};
  return {};
}

}  // namespace trainrr
