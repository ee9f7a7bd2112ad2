#pragma once
// Text that came from a file or a trace (untrusted bytes), made safe for where it is shown: a terminal,
// JSON, HTML. Each keeps valid UTF-8 as it is and never passes on a byte that could change what the reader
// of the output sees beyond the text itself.

#include <cmath>
#include <string>
#include <string_view>

namespace trainrr {

// For a terminal: control characters (but newline and tab), DEL and bytes that are not UTF-8 become \xNN,
// and the characters that act although they are valid UTF-8 become \uNNNN: the C1 controls (U+0080..U+009F)
// and the bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069). So an escape
// sequence in a trace cannot move the cursor, recolour or clear the screen, or set the window's title, text
// cannot be made to read in another order than its bytes run, and a binary file given by mistake cannot
// garble the message around it.
std::string printable(std::string_view text);

// For a string from a file or a trace shown inside a line of trainrr's own text: as printable(), and newline
// and tab too (\x0A, \x09), so that the string stays on its line and cannot print a line of its own.
std::string inline_text(std::string_view text);

// A JSON string literal, quotes included: quotes, backslashes and control characters escaped (the C1 and
// bidirectional controls above as \uNNNN); bytes that are not valid UTF-8 become U+FFFD, so the output parses
// whatever the bytes were.
std::string json_string(std::string_view text);

// For HTML text and attribute values: < > & " ' as entities; control characters (but newline and tab), the
// C1 and bidirectional controls above and bytes that are not valid UTF-8 become U+FFFD.
std::string html_escape(std::string_view text);

// A number for printf: a NaN loses its sign bit, which glibc would print as "-nan" (a NaN has no sign that
// means anything; every output says "nan").
inline double shown_number(double v) { return std::isnan(v) ? std::fabs(v) : v; }

}  // namespace trainrr
