#pragma once
// CSV data sets: a header line naming the columns, one row per sample, every cell a number.
// The label column is chosen by name; every other column is a float feature, in file order.
// Fields are separated by commas and may be double-quoted as in RFC 4180 (a quoted field stays on its line);
// lines end in \n, \r\n or a lone \r.

#include <string>
#include <string_view>

#include "engine/data/dataset.h"
#include "engine/result.h"

namespace trainrr {

// x: [rows, columns - 1]; y: the label column; feature_names: the other header names.
// Errors name path:line:column (column counted in characters from 1). With `quote_text` false they repeat
// nothing the file holds (no column name, no cell): for a file that may be anything, such as one a trace
// names.
Result<Dataset> read_csv(const std::string& path, const std::string& label_column, bool quote_text = true);
// The same for a file's bytes already in memory; `path` names it in errors.
Result<Dataset> parse_csv(std::string_view text, const std::string& path, const std::string& label_column,
                          bool quote_text = true);

}  // namespace trainrr
