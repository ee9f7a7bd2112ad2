#include "engine/escape.h"

#include <cstdint>
#include <cstdio>

namespace trainrr {
namespace {

// The code point of the valid UTF-8 sequence starting at s[i] (a byte >= 0x80) and its length, or a length
// of 0 if it is not one.
size_t utf8_length(std::string_view s, size_t i, uint32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = 0;
  cp = 0;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4, cp = c & 0x07;
  else
    return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not valid.
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

// Valid UTF-8 that still acts rather than shows: the C1 controls (U+0080..U+009F; U+009B is the one-byte CSI
// that starts an escape sequence on terminals that take it), and the bidirectional controls that reorder the
// text around them (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), so that a line reads otherwise
// than its bytes run.
bool acts(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// Calls `plain(bytes)` for each printable ASCII byte or valid UTF-8 sequence that shows as text,
// `other(byte)` for each byte that is neither (a control character, DEL, a byte outside valid UTF-8), and
// `control(cp)` for each valid UTF-8 sequence of a code point that acts (acts() above).
template <class Plain, class Other, class Control>
void walk(std::string_view s, Plain plain, Other other, Control control) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      uint32_t cp = 0;
      const size_t n = utf8_length(s, i, cp);
      if (n == 0) {
        other(c);
        ++i;
      } else {
        if (acts(cp))
          control(cp);
        else
          plain(s.substr(i, n));
        i += n;
      }
    } else if (c < 0x20 || c == 0x7F) {
      other(c);
      ++i;
    } else {
      plain(s.substr(i, 1));
      ++i;
    }
  }
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

std::string terminal_text(std::string_view s, bool keep_lines) {
  std::string out;
  out.reserve(s.size());
  walk(
      s, [&](std::string_view t) { out += t; },
      [&](unsigned char c) {
        if (keep_lines && (c == '\n' || c == '\t')) {
          out += static_cast<char>(c);
          return;
        }
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02X", c);
        out += buf;
      },
      [&](uint32_t cp) {
        char buf[12];
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(cp));
        out += buf;
      });
  return out;
}

}  // namespace

std::string printable(std::string_view s) { return terminal_text(s, true); }

std::string inline_text(std::string_view s) { return terminal_text(s, false); }

std::string json_string(std::string_view s) {
  std::string out = "\"";
  walk(
      s,
      [&](std::string_view t) {
        if (t == "\"" || t == "\\") out += '\\';
        out += t;
      },
      [&](unsigned char c) {
        if (c == '\n') {
          out += "\\n";
        } else if (c == '\t') {
          out += "\\t";
        } else if (c == '\r') {
          out += "\\r";
        } else if (c < 0x80) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += "\\ufffd";
        }
      },
      [&](uint32_t cp) {
        // The same character, written as an escape: a JSON parser reads it back, a terminal showing the
        // JSON does not act on it.
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
        out += buf;
      });
  return out + "\"";
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  walk(
      s,
      [&](std::string_view t) {
        if (t == "<")
          out += "&lt;";
        else if (t == ">")
          out += "&gt;";
        else if (t == "&")
          out += "&amp;";
        else if (t == "\"")
          out += "&quot;";
        else if (t == "'")
          out += "&#39;";
        else
          out += t;
      },
      [&](unsigned char c) {
        if (c == '\n' || c == '\t')
          out += static_cast<char>(c);
        else
          out += kReplacement;
      },
      [&](uint32_t) { out += kReplacement; });
  return out;
}

}  // namespace trainrr
