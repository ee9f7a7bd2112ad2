#pragma once
// Text that came from a file or a trace (untrusted bytes), made safe for where it is shown: a terminal,
// JSON, HTML. Each keeps valid UTF-8 as it is and never passes on a byte that could change what the reader
// of the output sees beyond the text itself.

#include <cmath>
#include <string>
#include <string_view>

namespace trainrr {

// For a terminal: control characters (but newline and tab), DEL and bytes that are not UTF-8 become \xNN,
// so an escape sequence in a trace cannot move the cursor, recolour or clear the screen, or set the
// window's title, and a binary file given by mistake cannot garble the message around it.
std::string printable(std::string_view text);

// A JSON string literal, quotes included: quotes, backslashes and control characters escaped; bytes that
// are not valid UTF-8 become U+FFFD, so the output parses whatever the bytes were.
std::string json_string(std::string_view text);

// For HTML text and attribute values: < > & " ' as entities; control characters (but newline and tab) and
// bytes that are not valid UTF-8 become U+FFFD.
std::string html_escape(std::string_view text);

// A number for printf: a NaN loses its sign bit, which glibc would print as "-nan" (a NaN has no sign that
// means anything; every output says "nan").
inline double shown_number(double v) { return std::isnan(v) ? std::fabs(v) : v; }

}  // namespace trainrr
