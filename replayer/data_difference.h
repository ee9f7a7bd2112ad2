#pragma once
// Where two copies of a data file first differ, for a `data` cause: the recorded copy (embedded in the
// trace) against the one the replay was given (--data).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace trainrr {

// For a CSV file: "first difference at line 7 (data row 6), column 4 'mean area': 551.1 (recorded) vs 552.1
// (now)", or a row present on one side only; for any other file, the first differing byte offset. Empty
// when the bytes are the same.
// `a` and `b` name the two copies in the message.
std::string first_data_difference(std::span<const uint8_t> recorded, std::string_view now, bool csv,
                                  std::string_view a = "recorded", std::string_view b = "now");

}  // namespace trainrr
