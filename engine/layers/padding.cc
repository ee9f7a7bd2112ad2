#include "engine/layers/padding.h"

#include <algorithm>
#include <string>

#include "engine/choice.h"

namespace trainrr {

const char* padding_name(Padding p) { return p == Padding::valid ? "valid" : "same"; }

Result<Padding> parse_padding(std::string_view name) {
  if (name == "valid") return Padding::valid;
  if (name == "same") return Padding::same;
  return Error{unknown_choice("padding", name, {"valid", "same"})};
}

Window1d window_1d(int64_t in, int64_t k, int64_t stride, Padding p) {
  Window1d w;
  if (p == Padding::valid) {
    w.out = in >= k ? (in - k) / stride + 1 : 0;
    return w;
  }
  w.out = (in + stride - 1) / stride;
  const int64_t pad_total = std::max<int64_t>((w.out - 1) * stride + k - in, 0);
  w.pad_before = pad_total / 2;
  return w;
}

}  // namespace trainrr
