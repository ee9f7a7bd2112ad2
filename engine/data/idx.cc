#include "engine/data/idx.h"

#include "engine/data/file_io.h"

namespace trainrr {
namespace {

template <class T>
void convert(const unsigned char* p, std::vector<float>& out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(load_be<T>(p + i * sizeof(T)));
}

}  // namespace

Result<Tensor> read_idx(const std::string& path) {
  Result<std::string> file = read_file_bytes(path);
  if (!file) return file.error();
  return parse_idx(*file, path);
}

Result<Tensor> parse_idx(std::string_view b, const std::string& path) {
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  auto err = [&](const std::string& what) { return Error{path + ": " + what}; };

  // The MNIST downloads are gzip files; saying so saves a puzzled look at "bad magic".
  if (b.size() >= 2 && u[0] == 0x1F && u[1] == 0x8B)
    return err("the file is gzip-compressed; decompress it first (gunzip " + path + ")");
  if (b.size() < 4 || u[0] != 0 || u[1] != 0)
    return err("not an IDX file (it does not start with the bytes 00 00)");
  const int type = u[2], rank = u[3];
  size_t item;
  switch (type) {
    case 0x08: case 0x09: item = 1; break;
    case 0x0B: item = 2; break;
    case 0x0C: case 0x0D: item = 4; break;
    case 0x0E: item = 8; break;
    default:
      return err("byte 2: unknown IDX type code 0x" + std::string(1, "0123456789ABCDEF"[type >> 4]) +
                 "0123456789ABCDEF"[type & 15] + " (expected 08, 09, 0B, 0C, 0D or 0E)");
  }
  if (rank == 0) return err("byte 3: the IDX header declares zero dimensions");
  const size_t data_at = 4 + 4 * static_cast<size_t>(rank);
  if (b.size() < data_at)
    return err("truncated: the header declares " + std::to_string(rank) + " dimensions, the file ends inside them");
  Shape shape(rank);
  for (int i = 0; i < rank; ++i) shape[i] = load_be<uint32_t>(u + 4 + 4 * i);

  const uint64_t have = b.size() - data_at;
  uint64_t need;
  if (!array_bytes_within(shape, item, have, need) || need != have) {
    if (!array_bytes_within(shape, item, UINT64_MAX, need))
      return err("shape " + shape_str(shape) + " is too large for any file");
    return err((need > have ? "truncated: shape " : "trailing bytes: shape ") + shape_str(shape) + " needs " +
               std::to_string(need) + " bytes of data, the file has " + std::to_string(have));
  }

  Tensor t;
  t.shape = std::move(shape);
  t.data.resize(need / item);
  const unsigned char* p = u + data_at;
  switch (type) {
    case 0x08: convert<uint8_t>(p, t.data); break;
    case 0x09: convert<int8_t>(p, t.data); break;
    case 0x0B: convert<int16_t>(p, t.data); break;
    case 0x0C: convert<int32_t>(p, t.data); break;
    case 0x0D: convert<float>(p, t.data); break;
    case 0x0E: {
      std::string problem;
      if (!float64_to_float32(p, std::endian::big, t.shape, t.data, problem)) return err(problem);
      break;
    }
  }
  return t;
}

Result<Dataset> read_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  Result<Tensor> images = read_idx(images_path);
  if (!images) return images.error();
  Result<Tensor> labels = read_idx(labels_path);
  if (!labels) return labels.error();
  if (images->rank() != 3 && images->rank() != 4)
    return Error{images_path + ": expected images of shape (n, height, width) or (n, height, width, channels), "
                 "found " + shape_str(images->shape)};
  if (labels->rank() != 1)
    return Error{labels_path + ": expected labels of shape (n,), found " + shape_str(labels->shape)};
  if (images->dim(0) != labels->dim(0))
    return Error{images_path + " has " + std::to_string(images->dim(0)) + " images but " + labels_path + " has " +
                 std::to_string(labels->dim(0)) + " labels; they must have one label per image"};
  Dataset d;
  Shape shape = images->shape;
  if (shape.size() == 3) shape.push_back(1);  // NHWC with one channel
  d.x = Tensor(std::move(shape), std::move(images->data));
  d.y = std::move(labels->data);
  d.num_classes = infer_num_classes(d.y);
  return d;
}

}  // namespace trainrr
