#include "engine/choice.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace trainrr {
namespace {

// Lower case, without '_' and '-': "Glorot-Uniform" and "glorot_uniform" both become "glorotuniform".
std::string folded(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '_' && c != '-') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

namespace {

template <typename Choices>
std::string closest(std::string_view given, const Choices& choices) {
  for (std::string_view c : choices)
    if (folded(c) == folded(given)) return std::string(c);
  std::string best;
  size_t best_d = 3;
  for (std::string_view c : choices)
    if (size_t d = edit_distance(given, c); d < best_d && d * 3 <= given.size())
      best_d = d, best = std::string(c);
  return best;
}

}  // namespace

std::string closest_choice(std::string_view given, std::initializer_list<std::string_view> choices) {
  return closest(given, choices);
}

std::string closest_choice(std::string_view given, const std::vector<std::string>& choices) {
  return closest(given, choices);
}

std::string unknown_choice(std::string_view what, std::string_view given,
                           std::initializer_list<std::string_view> choices) {
  std::string out = "unknown " + std::string(what) + " '" + std::string(given) + "'";
  if (const std::string close = closest_choice(given, choices); !close.empty())
    return out + " (did you mean '" + close + "'?)";
  std::string list;
  for (std::string_view c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
  return out + " (expected one of: " + list + ")";
}

std::string unknown_choice(std::string_view what, std::string_view given,
                           std::initializer_list<std::string_view> choices,
                           std::initializer_list<std::string_view> elsewhere) {
  if (std::find(elsewhere.begin(), elsewhere.end(), given) == elsewhere.end())
    return unknown_choice(what, given, choices);
  std::string list;
  for (std::string_view c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
  const std::string kind(what);
  return kind + " '" + std::string(given) + "' is a Keras one that trainrr's engine lacks (its " + kind +
         (kind.ends_with("s") ? "es" : "s") + ": " + list + ")";
}

std::string setting_number(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace trainrr
