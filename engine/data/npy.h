#pragma once
// NumPy .npy arrays (format versions 1.0 and 2.0). Reading accepts little-endian float32, float64, int32,
// int64 and uint8 in C order and converts to float32 (a finite float64 beyond float32's range is an error,
// not an infinity); writing produces float32, version 1.0. Files are untrusted: the shape is checked against
// the file's size before anything is allocated.

#include <string>
#include <string_view>

#include "engine/result.h"
#include "engine/tensor.h"

namespace trainrr {

Result<Tensor> read_npy(const std::string& path);
// The same for a file's bytes already in memory; `path` names it in errors.
Result<Tensor> parse_npy(std::string_view bytes, const std::string& path);
// The dtype of a .npy file's bytes, as numpy names it ("float32", "float64", "int32", "int64", "uint8");
// empty when its header cannot be read or names a dtype that the reader does not take.
std::string npy_dtype_name(std::string_view bytes);
Status write_npy(const std::string& path, const Tensor& t);

}  // namespace trainrr
