#pragma once
// Where two copies of a data file first differ, for a `data` cause: the recorded copy (embedded in the
// trace) against the one the replay was given (--data).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "traces/trace.h"

namespace trainrr {

struct DataDifference {
  // Where the copies first differ, in words; empty when the bytes are the same.
  std::string where;
  // The bytes differ but the values the run reads from them are the same: two .npy arrays of one shape whose
  // values are the same once read as float32 (saved in other dtypes, say), or two CSV files of the same rows.
  // `where` then says how the files differ, and the run that reads either copy reads the same data.
  bool same_values = false;
};

// For a CSV file: "first difference at line 7 (data row 5, counting from 0), column 4 'mean area': 551.1
// (recorded) vs 552.1 (now)", or a row present on one side only; for two .npy arrays, the first element that
// differs as the run reads it (float32), and their dtypes where those differ; for any other file, the first
// differing byte offset. `a` and `b` name the two copies in the message. With `label_a` and `label_b`, the
// label column each copy's run reads, two CSV copies are read as the runs read them: the same values (other
// line endings, blank lines, a byte-order mark, the label column moved) are the same data (same_values), and
// otherwise the first value that differs, as float32, is named. Rows are counted as the reader counts them: a
// blank line holds none.
DataDifference first_data_difference(std::span<const uint8_t> recorded, std::string_view now, bool csv,
                                     std::string_view a = "recorded", std::string_view b = "now",
                                     std::string_view label_a = "", std::string_view label_b = "");

// The recorded copy of a data file: embedded in the trace, or else at its recorded path where the file there
// still holds the recorded bytes (its size and digest), read whole (up to 1 GiB) into `read`; empty where
// neither is at hand.
std::span<const uint8_t> recorded_copy(const trace::DatasetInfo& info, std::vector<uint8_t>& read);

}  // namespace trainrr
