#include "replayer/data_difference.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/data/csv.h"
#include "engine/data/file_io.h"
#include "engine/data/npy.h"
#include "replayer/divergence.h"

namespace trainrr {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

// At most 40 bytes of a field, for a message.
std::string shown(std::string_view s) {
  return s.size() <= 40 ? std::string(s) : std::string(s.substr(0, 40)) + "...";
}

}  // namespace

DataDifference first_data_difference(std::span<const uint8_t> recorded_bytes, std::string_view now, bool csv,
                                     std::string_view name_a, std::string_view name_b,
                                     std::string_view label_a, std::string_view label_b) {
  const std::string a_is = " (" + std::string(name_a) + ")", b_is = " (" + std::string(name_b) + ")";
  const std::string_view recorded(reinterpret_cast<const char*>(recorded_bytes.data()), recorded_bytes.size());
  if (recorded == now) return {};
  // Two NumPy arrays: compared as the run reads them, converted to float32; the first element that differs,
  // by its row and column, as numpy indexes them.
  if (recorded.starts_with("\x93NUMPY") && now.starts_with("\x93NUMPY")) {
    auto ta = parse_npy(recorded, std::string(name_a)), tb = parse_npy(now, std::string(name_b));
    if (ta && tb) {
      const std::string da = npy_dtype_name(recorded), db = npy_dtype_name(now);
      const std::string dtypes = da == db ? "" : "other dtypes, " + da + a_is + " vs " + db + b_is;
      if (ta->shape != tb->shape)
        return {"the arrays have other shapes: " + shape_str(ta->shape) + a_is + " vs " +
                shape_str(tb->shape) + b_is + (dtypes.empty() ? "" : ", and " + dtypes)};
      const std::string read_as =
          dtypes.empty() ? ""
                         : "the arrays have " + dtypes + "; converted to float32, as the run reads them, ";
      const int64_t per_row = ta->shape.size() > 1 && ta->shape[0] > 0 ? ta->size() / ta->shape[0] : 1;
      for (int64_t i = 0; i < ta->size(); ++i) {
        if (std::memcmp(&ta->data[i], &tb->data[i], sizeof(float)) == 0) continue;
        std::string where = "first difference at row " + std::to_string(i / per_row);
        if (ta->shape.size() > 1) where += ", element " + std::to_string(i % per_row) + " of the row";
        const auto [va, vb] = side_by_side(ta->data[i], tb->data[i]);
        return {read_as + where + " (counting from 0): " + va + a_is + " vs " + vb + b_is};
      }
      if (!dtypes.empty())
        return {"the arrays have " + dtypes + ", and the same " + std::to_string(ta->size()) +
                    " values once converted to float32, as the run reads them",
                true};
      // Of one dtype: the values' bytes, at the end of each file, are the same or not.
      const size_t item = da == "float64" || da == "int64" ? 8 : da == "uint8" ? 1 : 4;
      const size_t tail = static_cast<size_t>(ta->size()) * item;
      if (tail <= recorded.size() && tail <= now.size() &&
          recorded.substr(recorded.size() - tail) == now.substr(now.size() - tail))
        return {"the arrays hold the same values, of one dtype (" + da + "): only their .npy headers differ",
                true};
      return {"the arrays hold other " + da + " values, and the same " + std::to_string(ta->size()) +
                  " values once converted to float32, as the run reads them",
              true};
    }
    // One that the run cannot read: why, rather than the first byte that differs.
    if (ta && !tb)
      return {std::string(name_b) + " cannot be read as the run reads it: " + tb.error().message};
    if (!ta && tb)
      return {std::string(name_a) + " cannot be read as the run reads it: " + ta.error().message};
  }
  if (!csv) {
    const size_t n = std::min(recorded.size(), now.size());
    size_t at = 0;
    while (at < n && recorded[at] == now[at]) ++at;
    return {"first difference at byte " + std::to_string(at) + " (" + std::to_string(recorded.size()) +
            " bytes " + std::string(name_a) + ", " + std::to_string(now.size()) + " " + std::string(name_b) +
            ")"};
  }
  // Two copies the run reads the same values from (other line endings, a byte-order mark, blank lines,
  // quoting or spaces): the same data, as two .npy copies of the same values are.
  struct Line {
    size_t number;  // from 1
    std::string_view text;
  };
  auto rows_of = [](std::string_view text) {
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    std::vector<Line> out;
    size_t number = 0;
    // Lines end in \n, \r\n or a lone \r, as the reader takes them; one of blanks and tabs alone is blank.
    while (!text.empty()) {
      const size_t end = text.find_first_of("\r\n");
      const std::string_view l = text.substr(0, end);
      ++number;
      if (l.find_first_not_of(" \t") != std::string_view::npos) out.push_back({number, trimmed(l)});
      if (end == std::string_view::npos) break;
      text.remove_prefix(end + (text.substr(end, 2) == "\r\n" ? 2 : 1));
    }
    return out;
  };
  if (!label_a.empty() && !label_b.empty()) {
    auto pa = parse_csv(recorded, std::string(name_a), std::string(label_a), false);
    auto pb = parse_csv(now, std::string(name_b), std::string(label_b), false);
    if (pa && pb && pa->x.shape == pb->x.shape && pa->feature_names == pb->feature_names &&
        pa->y.size() == pb->y.size()) {
      if (std::memcmp(pa->x.data.data(), pb->x.data.data(), pa->x.data.size() * sizeof(float)) == 0 &&
          std::memcmp(pa->y.data(), pb->y.data(), pa->y.size() * sizeof(float)) == 0)
        return {
            "the rows hold the same values, as the run reads them (every feature and label, bit for bit): "
            "the files differ in their text alone",
            true};
    }
    // Two files the run reads with the same columns: the first value that differs as the run reads it
    // (float32), by the line that holds its row in each copy.
    if (pa && pb && pa->feature_names == pb->feature_names && pa->x.shape.size() == 2 &&
        pb->x.shape.size() == 2 && pa->x.shape[1] == pb->x.shape[1]) {
      const int64_t cols = pa->x.shape[1], rows = std::min(pa->rows(), pb->rows());
      // A feature's column in the file (from 1), where the label column stands at one place in both: the
      // features are the other columns, in order.
      auto column_of = [&](int64_t col) {
        const int64_t label_col = pa->label_column;
        if (label_col < 0 || label_col != pb->label_column) return std::string();
        return std::to_string(col + (col >= label_col ? 2 : 1)) + " ";
      };
      auto where = [&](int64_t row) {
        const int64_t la = pa->line_of(row), lb = pb->line_of(row);
        const std::string line = la == lb || row >= pa->rows() || row >= pb->rows()
                                     ? "line " + std::to_string(row < pa->rows() ? la : lb)
                                     : "line " + std::to_string(la) + a_is + ", " + std::to_string(lb) + b_is;
        return "first difference at " + line + " (data row " + std::to_string(row) + ", counting from 0)";
      };
      for (int64_t row = 0; row < rows; ++row) {
        for (int64_t col = 0; col < cols; ++col) {
          const float va = pa->x.data[row * cols + col], vb = pb->x.data[row * cols + col];
          if (std::memcmp(&va, &vb, sizeof va) == 0) continue;
          const auto [ta, tb] = side_by_side(va, vb);
          return {where(row) + ", column " + column_of(col) + "'" + shown(pa->feature_names[col]) +
                  "': " + ta + a_is + " vs " + tb + b_is};
        }
        if (std::memcmp(&pa->y[row], &pb->y[row], sizeof(float)) != 0) {
          const auto [ta, tb] = side_by_side(pa->y[row], pb->y[row]);
          return {where(row) + ", the label" +
                  (label_a == label_b ? " ('" + shown(label_a) + "')" : std::string()) + ": " + ta + a_is +
                  " vs " + tb + b_is};
        }
      }
      if (pa->rows() != pb->rows())
        return {where(rows) + ": a row only the " + std::string(pa->rows() > pb->rows() ? name_a : name_b) +
                " copy has"};
    }
  }
  // Fields are compared as text, split at commas: a quoted field with a comma inside shifts the count of
  // that row's later columns, which the row number still locates. Rows are counted as the reader counts
  // them: a blank line holds none, and a byte-order mark is no part of the header.
  const auto a = rows_of(recorded), b = rows_of(now);
  const auto header = split(a.empty() ? std::string_view() : a[0].text, ',');
  for (size_t row = 0; row < std::max(a.size(), b.size()); ++row) {
    // The line of each copy that holds the row (one number where they agree).
    std::string line;
    if (row < a.size() && row < b.size() && a[row].number != b[row].number)
      line = "line " + std::to_string(a[row].number) + a_is + ", " + std::to_string(b[row].number) + b_is;
    else
      line = "line " + std::to_string(row < a.size() ? a[row].number : b[row].number);
    const std::string where =
        line + (row == 0 ? std::string(" (the header)")
                         : " (data row " + std::to_string(row - 1) + ", counting from 0)");
    if (row >= a.size())
      return {"first difference at " + where + ": a row only the " + std::string(name_b) + " copy has"};
    if (row >= b.size())
      return {"first difference at " + where + ": a row only the " + std::string(name_a) + " copy has"};
    const std::string_view ra = a[row].text, rb = b[row].text;
    if (ra == rb) continue;
    const auto fa = split(ra, ','), fb = split(rb, ',');
    for (size_t col = 0; col < std::max(fa.size(), fb.size()); ++col) {
      const std::string_view va = col < fa.size() ? fa[col] : std::string_view("(none)");
      const std::string_view vb = col < fb.size() ? fb[col] : std::string_view("(none)");
      if (va == vb && col < fa.size() && col < fb.size()) continue;
      std::string column = "column " + std::to_string(col + 1);
      if (row > 0 && col < header.size()) column += " '" + shown(header[col]) + "'";
      return {"first difference at " + where + ", " + column + ": " + shown(va) + a_is + " vs " + shown(vb) +
              b_is};
    }
  }
  return {
      "the rows hold the same text: only line endings, blank lines, a byte-order mark or spaces at the "
      "ends of lines differ"};
}

std::span<const uint8_t> recorded_copy(const trace::DatasetInfo& info, std::vector<uint8_t>& read) {
  if (!info.embedded.empty()) return info.embedded;
  if (info.path.empty() || info.size_bytes > (uint64_t{1} << 30)) return {};
  // A regular file of the recorded size and digest: the path comes from the trace, and only the very bytes
  // it recorded are read back whole.
  auto file = trace::digest_regular_file(info.path, info.size_bytes);
  if (!file || !file->digested || !(file->digest == info.digest)) return {};
  auto bytes = read_file_bytes(info.path);
  if (!bytes || bytes->size() != info.size_bytes) return {};
  read.assign(bytes->begin(), bytes->end());
  if (!(trace::digest128_bytes(read) == info.digest)) return {};  // changed since it was digested
  return read;
}

}  // namespace trainrr
