#include "engine/data/csv.h"

#include <charconv>
#include <cmath>
#include <string_view>
#include <vector>

#include "engine/data/file_io.h"

namespace trainrr {
namespace {

struct Field {
  std::string_view text;
  size_t column;  // 1-based character column of the field's first character
};

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Splits one line (without its end) at commas. Quoted cells are not needed: every data cell is a number.
void split_fields(std::string_view line, std::vector<Field>& out) {
  out.clear();
  size_t start = 0;
  for (;;) {
    const size_t comma = line.find(',', start);
    const size_t end = comma == std::string_view::npos ? line.size() : comma;
    out.push_back({line.substr(start, end - start), start + 1});
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
}

std::string header_name(std::string_view field) {
  std::string_view s = trim(field);
  // Spreadsheet exports sometimes quote the header names.
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

// Lines of a buffer, accepting \n and \r\n ends and a missing final newline.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool next(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    size_t end = text_.find('\n', pos_);
    if (end == std::string_view::npos) end = text_.size();
    line = text_.substr(pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ = end + 1;
    ++number_;
    return true;
  }
  int64_t number() const { return number_; }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  int64_t number_ = 0;
};

std::string list_columns(const std::vector<std::string>& names) {
  constexpr size_t kShown = 12;
  std::string s;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown)
    s += ", ... (" + std::to_string(names.size()) + " columns; the last is " + names.back() + ")";
  return s;
}

enum class Parsed { ok, not_a_number, out_of_range, not_finite };

Parsed parse_float(std::string_view text, float& value) {
  std::string_view s = trim(text);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);  // from_chars rejects a leading plus
  if (s.empty()) return Parsed::not_a_number;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (end != s.data() + s.size()) return Parsed::not_a_number;
  if (ec == std::errc::result_out_of_range) {
    // Tiny values like 1e-50 round to zero as in pandas; only overflow is an error.
    double d;
    auto [dend, dec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (dec != std::errc() || dend != end || !(d > -1 && d < 1)) return Parsed::out_of_range;
    value = static_cast<float>(d);
    return Parsed::ok;
  }
  if (ec != std::errc()) return Parsed::not_a_number;
  return std::isfinite(value) ? Parsed::ok : Parsed::not_finite;  // "nan", "inf": from_chars takes them
}

}  // namespace

Result<Dataset> read_csv(const std::string& path, const std::string& label_column) {
  Result<std::string> bytes = read_file_bytes(path);
  if (!bytes) return bytes.error();
  return parse_csv(*bytes, path, label_column);
}

Result<Dataset> parse_csv(std::string_view text, const std::string& path, const std::string& label_column) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // a UTF-8 byte-order mark
  auto where = [&](int64_t line, size_t column) {
    return path + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  };

  LineReader lines(text);
  std::string_view line;
  bool have_header = false;
  while (lines.next(line)) {
    if (!trim(line).empty()) {
      have_header = true;
      break;
    }
  }
  if (!have_header)
    return Error{where(1, 1) + "the file is empty; a CSV data set needs a header line naming its columns"};

  const int64_t header_line = lines.number();
  std::vector<Field> fields;
  split_fields(line, fields);
  std::vector<std::string> names;
  for (const Field& f : fields) names.push_back(header_name(f.text));
  int label = -1;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != label_column) continue;
    if (label >= 0)
      return Error{where(header_line, fields[i].column) + "the label column \"" + label_column +
                   "\" appears twice in the header"};
    label = static_cast<int>(i);
  }
  if (label < 0)
    return Error{where(header_line, 1) + "no column named \"" + label_column +
                 "\" for the label; the columns are: " + list_columns(names)};
  const size_t expected = names.size();
  if (expected < 2)
    return Error{where(header_line, 1) + "the header names only the label column \"" + label_column +
                 "\"; there are no feature columns"};

  Dataset d;
  for (size_t i = 0; i < names.size(); ++i)
    if (static_cast<int>(i) != label) d.feature_names.push_back(names[i]);
  std::vector<float> x;
  x.reserve(text.size() / 4);  // a cell takes at least two characters; over-reserving is harmless
  int64_t rows = 0;
  while (lines.next(line)) {
    if (trim(line).empty()) continue;  // blank lines (often at the end) carry no row, as in pandas
    const int64_t ln = lines.number();
    split_fields(line, fields);
    if (fields.size() != expected) {
      const size_t column = fields.size() > expected ? fields[expected].column : line.size() + 1;
      return Error{where(ln, column) + "expected " + std::to_string(expected) + " fields as in the header, found " +
                   std::to_string(fields.size())};
    }
    for (size_t i = 0; i < fields.size(); ++i) {
      float v;
      const Parsed p = parse_float(fields[i].text, v);
      if (p != Parsed::ok) {
        const char* what = p == Parsed::out_of_range ? "a number within float range"
                           : p == Parsed::not_finite ? "a finite number"
                                                     : "a number";
        const bool missing = p == Parsed::not_finite && std::isnan(v);
        return Error{where(ln, fields[i].column) + "column \"" + names[i] + "\": expected " + what +
                     ", found \"" + std::string(fields[i].text) + "\"" +
                     (missing ? " (a missing value? fill or drop such rows first)" : "")};
      }
      if (static_cast<int>(i) == label)
        d.y.push_back(v);
      else
        x.push_back(v);
    }
    ++rows;
  }
  if (rows == 0)
    return Error{where(lines.number() + 1, 1) + "no data rows after the header; the data set is empty"};

  d.x = Tensor({rows, static_cast<int64_t>(expected - 1)}, std::move(x));
  d.num_classes = infer_num_classes(d.y);
  return d;
}

}  // namespace trainrr
