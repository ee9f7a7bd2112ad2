#include "engine/escape.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

// The characters that act although they are valid UTF-8: U+009B (CSI, which starts an escape sequence on a
// terminal that takes C1 controls) and U+202E (RIGHT-TO-LEFT OVERRIDE, which shows what follows reversed).
const std::string kCsi = "\xC2\x9B", kRlo = "\xE2\x80\xAE", kLri = "\xE2\x81\xA6", kAlm = "\xD8\x9C";

TEST(Escape, TerminalTextShowsC1AndBidirectionalControlsAsEscapes) {
  EXPECT_EQ(printable("a" + kCsi + "31m" + kRlo + "txt." + kLri + kAlm),
            "a\\u009B31m\\u202Etxt.\\u2066\\u061C");
  EXPECT_EQ(printable("\xC2\x80\xC2\x9F"), "\\u0080\\u009F");
  // Text that only shows passes as it is: accents, scripts written right to left, U+00A0 after the C1 block.
  EXPECT_EQ(printable("caf\xC3\xA9 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xC2\xA0 \xE4\xB8\xAD"),
            "caf\xC3\xA9 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xC2\xA0 \xE4\xB8\xAD");
  EXPECT_EQ(printable("\x1b[2J\r"), "\\x1B[2J\\x0D");
  EXPECT_EQ(printable("line\nnext\ttab"), "line\nnext\ttab");  // trainrr's own text keeps its lines
}

TEST(Escape, InlineTextKeepsAStringOnItsLine) {
  EXPECT_EQ(inline_text("run.toml\nended cleanly: forged\r\tx"),
            "run.toml\\x0Aended cleanly: forged\\x0D\\x09x");
  EXPECT_EQ(inline_text(kCsi + kRlo), "\\u009B\\u202E");
  EXPECT_EQ(inline_text("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(Escape, JsonAndHtmlCarryNoC1OrBidirectionalControlRaw) {
  EXPECT_EQ(json_string("a" + kCsi + kRlo + "\n"), "\"a\\u009b\\u202e\\n\"");
  EXPECT_EQ(html_escape("a" + kCsi + kRlo + "<"), "a\xEF\xBF\xBD\xEF\xBF\xBD&lt;");
}

}  // namespace
}  // namespace trainrr
