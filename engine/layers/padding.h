#pragma once
// Window geometry shared by Conv2D and MaxPool2D, computed as Keras does.

#include <cstdint>
#include <string_view>

#include "engine/result.h"

namespace trainrr {

enum class Padding : uint8_t { valid, same };

const char* padding_name(Padding p);  // "valid", "same"
Result<Padding> parse_padding(std::string_view name);

struct Window1d {
  int64_t out = 0;         // output size; 0 when a valid window does not fit the input
  int64_t pad_before = 0;  // zero rows (or columns) added before the input
};

// valid: out = (in - k) / stride + 1. same: out = ceil(in / stride),
// pad_total = max((out - 1) * stride + k - in, 0), pad_before = pad_total / 2 (the extra one goes after).
Window1d window_1d(int64_t in, int64_t k, int64_t stride, Padding p);

}  // namespace trainrr
