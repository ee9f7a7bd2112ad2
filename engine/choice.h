#pragma once
// Messages for a name that is not one of the names a setting takes: the closest one when there is one, so
// that "ReLU" gets "did you mean 'relu'?" rather than a list to read through.

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace trainrr {

// Levenshtein distance: insertions, deletions and substitutions of one byte each.
size_t edit_distance(std::string_view a, std::string_view b);

// The choice `given` most likely meant: one that differs only in case, '_' and '-' (ReLU, Glorot-Uniform),
// else the one at edit distance 1 or 2, and at most a third of `given`'s length (no one-letter name is a
// misspelling of another), the nearest first; empty when none is that close.
std::string closest_choice(std::string_view given, std::initializer_list<std::string_view> choices);
std::string closest_choice(std::string_view given, const std::vector<std::string>& choices);

// "unknown WHAT 'GIVEN' (did you mean 'X'?)" when a choice is close, else
// "unknown WHAT 'GIVEN' (expected one of: a, b, c)".
std::string unknown_choice(std::string_view what, std::string_view given,
                           std::initializer_list<std::string_view> choices);
// As above, but a name in `elsewhere` (one Keras has, say) is no misspelling of a choice: "WHAT 'GIVEN' is a
// Keras one that trainrr's engine lacks (its WHATs: a, b, c)", rather than a suggestion of another that
// merely looks like it ('gelu' is not 'relu').
std::string unknown_choice(std::string_view what, std::string_view given,
                           std::initializer_list<std::string_view> choices,
                           std::initializer_list<std::string_view> elsewhere);

// A setting's number as messages give it: the shortest text that reads back as it (0.2, not 0.200000 or
// 0.20000000000000001; 0.9999999999, never a rounded 1).
std::string setting_number(double v);

}  // namespace trainrr
