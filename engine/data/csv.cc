#include "engine/data/csv.h"

#include <charconv>
#include <cmath>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/choice.h"
#include "engine/data/file_io.h"

namespace trainrr {
namespace {

struct Field {
  std::string_view text;  // without its quotes, `""` read as `"`, if it was quoted
  size_t column;          // 1-based character column of the field's first character
  bool quoted;
};

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

struct SplitError {
  size_t column;
  std::string what;
};

// Splits one line (without its end) at commas, as RFC 4180 says: a field may be enclosed in double quotes,
// with blanks around them; inside, a comma does not split and `""` is one `"`. `unquoted` holds the text of
// quoted fields that had `""`; the fields' views point into it or into `line`, so both must outlive `out`.
std::optional<SplitError> split_fields(std::string_view line, std::vector<Field>& out,
                                       std::string& unquoted) {
  out.clear();
  unquoted.clear();
  // The unquoted texts together are shorter than the line, so `unquoted` never reallocates under the views.
  unquoted.reserve(line.size());
  size_t pos = 0;
  for (;;) {
    size_t open = pos;
    while (open < line.size() && is_blank(line[open])) ++open;
    if (open < line.size() && line[open] == '"') {
      size_t at = open + 1;
      size_t run = at;  // the start of the current stretch without `""`
      const size_t unquoted_start = unquoted.size();
      bool escaped = false;
      for (;;) {
        const size_t quote = line.find('"', at);
        if (quote == std::string_view::npos)
          return SplitError{open + 1,
                            "the quoted field opened here is not closed on its line (a quote inside "
                            "a quoted field is written \"\")"};
        if (quote + 1 < line.size() && line[quote + 1] == '"') {
          unquoted.append(line.substr(run, quote + 1 - run));
          escaped = true;
          at = run = quote + 2;
          continue;
        }
        std::string_view text = line.substr(run, quote - run);
        if (escaped) {
          unquoted.append(text);
          text = std::string_view(unquoted).substr(unquoted_start);
        }
        out.push_back({text, open + 1, true});
        at = quote + 1;
        break;
      }
      while (at < line.size() && is_blank(line[at])) ++at;
      if (at == line.size()) break;
      if (line[at] != ',')
        return SplitError{at + 1, std::string("unexpected '") + line[at] +
                                      "' after the closing quote of a quoted field (a quote inside it is "
                                      "written \"\")"};
      pos = at + 1;
      continue;
    }
    const size_t comma = line.find(',', pos);
    const size_t end = comma == std::string_view::npos ? line.size() : comma;
    out.push_back({line.substr(pos, end - pos), pos + 1, false});
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return std::nullopt;
}

// A quoted name is taken as written; an unquoted one without its surrounding blanks.
std::string header_name(const Field& field) {
  return std::string(field.quoted ? field.text : trim(field.text));
}

// Lines of a buffer, accepting \n, \r\n and lone \r ends (old Mac files) and a missing final newline.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool next(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    size_t end = text_.find_first_of("\r\n", pos_);
    if (end == std::string_view::npos) end = text_.size();
    line = text_.substr(pos_, end - pos_);
    pos_ = end + (text_.substr(end).starts_with("\r\n") ? 2 : 1);
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

// For a header that did not split at commas, the separator it seems to use instead, as a hint.
std::string dialect_hint(const std::vector<std::string>& names) {
  if (names.size() != 1) return "";
  const char* has = names[0].find(';') != std::string::npos    ? "';'"
                    : names[0].find('\t') != std::string::npos ? "tabs"
                                                               : nullptr;
  if (!has) return "";
  return std::string(" (the header has no commas but has ") + has + ": trainrr reads comma-separated files)";
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

Result<Dataset> read_csv(const std::string& path, const std::string& label_column, bool quote_text) {
  Result<std::string> bytes = read_file_bytes(path);
  if (!bytes) return bytes.error();
  return parse_csv(*bytes, path, label_column, quote_text);
}

Result<Dataset> parse_csv(std::string_view text, const std::string& path, const std::string& label_column,
                          bool quote_text) {
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
  std::string unquoted;
  // The file's own text is left out of every message below when it must not be shown.
  const auto split_error = [&](int64_t ln, const SplitError& e) {
    return Error{where(ln, e.column) + (quote_text ? e.what : "the line does not split into fields")};
  };
  if (auto e = split_fields(line, fields, unquoted)) return split_error(header_line, *e);
  std::vector<std::string> names;
  for (const Field& f : fields) names.push_back(header_name(f));
  int label = -1;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != label_column) continue;
    if (label >= 0)
      return Error{where(header_line, fields[i].column) + "the label column \"" + label_column +
                   "\" appears twice in the header"};
    label = static_cast<int>(i);
  }
  if (label < 0 && !quote_text)
    return Error{where(header_line, 1) + "no column named \"" + label_column +
                 "\" for the label (the header has " + std::to_string(names.size()) + " column" +
                 (names.size() == 1 ? "" : "s") +
                 "; their names are not shown, as the file is not the one recorded)"};
  if (label < 0) {
    const std::string close = closest_choice(label_column, names);
    return Error{where(header_line, 1) + "no column named \"" + label_column + "\" for the label" +
                 (close.empty() ? "" : " (did you mean \"" + close + "\"?)") +
                 "; the columns are: " + list_columns(names) + dialect_hint(names)};
  }
  const size_t expected = names.size();
  if (expected < 2)
    return Error{where(header_line, 1) + "the header names only the label column \"" + label_column +
                 "\"; there are no feature columns"};

  Dataset d;
  d.label_column = label;
  for (size_t i = 0; i < names.size(); ++i)
    if (static_cast<int>(i) != label) d.feature_names.push_back(names[i]);
  std::vector<float> x;
  x.reserve(text.size() / 4);  // a cell takes at least two characters; over-reserving is harmless
  int64_t rows = 0;
  while (lines.next(line)) {
    if (trim(line).empty()) continue;  // blank lines (often at the end) carry no row, as in pandas
    const int64_t ln = lines.number();
    // Where the rows lie, for messages that name a row by its line: a new run after a line without a row.
    if (d.line_runs.empty() || d.line_runs.back().second + (rows - d.line_runs.back().first) != ln)
      d.line_runs.emplace_back(rows, ln);
    if (auto e = split_fields(line, fields, unquoted)) return split_error(ln, *e);
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
        if (!quote_text)
          return Error{where(ln, fields[i].column) + "column " + std::to_string(i + 1) + ": expected " +
                       what};
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
