#pragma once
// The IDX format of the MNIST files: magic 0x00 0x00, a type code, a rank; then big-endian uint32 dimensions
// and the values, big-endian, in C order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
// 0x0D float32, 0x0E float64. Values are converted to float32 unchanged (no scaling); a finite float64 beyond
// float32's range is an error, not an infinity.

#include <string>
#include <string_view>

#include "engine/data/dataset.h"
#include "engine/result.h"
#include "engine/tensor.h"

namespace trainrr {

Result<Tensor> read_idx(const std::string& path);
// The same for a file's bytes already in memory; `path` names it in errors.
Result<Tensor> parse_idx(std::string_view bytes, const std::string& path);

// Images [n, h, w] (or [n, h, w, c]) and labels [n]: x is [n, h, w, 1] (or [n, h, w, c]) raw values, y the labels.
Result<Dataset> read_idx_dataset(const std::string& images_path, const std::string& labels_path);

}  // namespace trainrr
