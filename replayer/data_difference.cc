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
                                     std::string_view csv_label) {
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
  if (!csv_label.empty()) {
    auto pa = parse_csv(recorded, std::string(name_a), std::string(csv_label), false);
    auto pb = parse_csv(now, std::string(name_b), std::string(csv_label), false);
    if (pa && pb && pa->x.shape == pb->x.shape && pa->feature_names == pb->feature_names &&
        pa->y.size() == pb->y.size() &&
        std::memcmp(pa->x.data.data(), pb->x.data.data(), pa->x.data.size() * sizeof(float)) == 0 &&
        std::memcmp(pa->y.data(), pb->y.data(), pa->y.size() * sizeof(float)) == 0)
      return {
          "the rows hold the same values, as the run reads them: only the text differs (line endings, "
          "blank lines, a byte-order mark, quoting or spaces)",
          true};
  }
  // Fields are compared as text, split at commas: a quoted field with a comma inside shifts the count of
  // that row's later columns, which the row number still locates. Rows are counted as the reader counts
  // them: a blank line holds none, and a byte-order mark is no part of the header.
  struct Line {
    size_t number;  // from 1
    std::string_view text;
  };
  auto rows_of = [](std::string_view text) {
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    std::vector<Line> out;
    size_t number = 0;
    for (std::string_view l : split(text, '\n')) {
      ++number;
      if (!trimmed(l).empty()) out.push_back({number, trimmed(l)});
    }
    return out;
  };
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
