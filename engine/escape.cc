#include "engine/escape.h"

#include <cstdint>
#include <cstdio>

namespace trainrr {
namespace {

// Length of the valid UTF-8 sequence starting at s[i] (a byte >= 0x80), or 0 if it is not one.
size_t utf8_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = 0;
  uint32_t cp = 0;
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

// Calls `plain(bytes)` for each valid UTF-8 sequence or printable ASCII byte and `other(byte)` for each
// byte that is neither (a control character, DEL, a byte outside valid UTF-8).
template <class Plain, class Other>
void walk(std::string_view s, Plain plain, Other other) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = utf8_length(s, i);
      if (n == 0) {
        other(c);
        ++i;
      } else {
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

}  // namespace

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  walk(
      s, [&](std::string_view t) { out += t; },
      [&](unsigned char c) {
        if (c == '\n' || c == '\t') {
          out += static_cast<char>(c);
          return;
        }
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02X", c);
        out += buf;
      });
  return out;
}

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
      });
  return out + "\"";
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  walk(
      s,
      [&](std::string_view t) {
        if (t == "<") out += "&lt;";
        else if (t == ">") out += "&gt;";
        else if (t == "&") out += "&amp;";
        else if (t == "\"") out += "&quot;";
        else if (t == "'") out += "&#39;";
        else out += t;
      },
      [&](unsigned char c) {
        if (c == '\n' || c == '\t') out += static_cast<char>(c);
        else out += kReplacement;
      });
  return out;
}

}  // namespace trainrr
