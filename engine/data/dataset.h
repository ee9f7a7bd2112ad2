#pragma once
// Data sets in memory: features as a float tensor [rows, ...sample shape], one label per row.

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/result.h"
#include "engine/tensor.h"

namespace trainrr {

struct Dataset {
  Tensor x;                // [rows, ...sample shape]
  std::vector<float> y;    // rows labels: class index (classification) or target (regression)
  std::vector<std::string> feature_names;  // CSV header names, when known
  int num_classes = 0;     // 1 + largest label when every label is a non-negative integer, else 0
  // For a CSV file, where its rows lie: (row, its line in the file, from 1) for row 0 and each row after a
  // line that holds none (a blank line); empty for other sources.
  std::vector<std::pair<int64_t, int64_t>> line_runs;
  // For a CSV file, the label's column (from 0) among all the file's columns; -1 for other sources.
  int label_column = -1;

  int64_t rows() const { return x.shape.empty() ? 0 : x.shape[0]; }
  // The line of the file (from 1) that holds `row` (from 0); 0 where not known (not a CSV file).
  int64_t line_of(int64_t row) const {
    int64_t line = 0;
    for (const auto& [first, at] : line_runs)
      if (first <= row) line = at + (row - first);
    return line;
  }
  Shape sample_shape() const { return Shape(x.shape.begin() + 1, x.shape.end()); }
};

// The rows `rows` of `d`, in that order.
Dataset take_rows(const Dataset& d, std::span<const uint32_t> rows);
// 1 + the largest label if all labels are non-negative integers, else 0.
int infer_num_classes(std::span<const float> labels);

}  // namespace trainrr
