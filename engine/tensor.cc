#include "engine/tensor.h"

#include <unistd.h>

#include <algorithm>
#include <new>
#include <stdexcept>

#include "engine/result.h"

namespace trainrr {

int64_t shape_size(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n))
      throw std::length_error("shape " + shape_str(shape) + " is too large");
  return n;
}

int64_t allocation_size(const Shape& shape) {
  static const uint64_t memory_bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : UINT64_MAX;
  }();
  const int64_t n = shape_size(shape);
  if (n > 0 && static_cast<uint64_t>(n) > memory_bytes / sizeof(float)) throw std::bad_alloc();
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

Tensor::Tensor(Shape s, std::vector<float> values) : shape(std::move(s)), data(std::move(values)) {
  TRAINRR_CHECK(shape_size(shape) == size(), "values do not fill shape " + shape_str(shape));
}

DeviceArray::DeviceArray(const DeviceArray& other) {
  if (!other.memory_) return;
  resize(*other.memory_, other.bytes_);
  if (bytes_) memory_->copy(data_, other.data_, bytes_);
}

DeviceArray& DeviceArray::operator=(const DeviceArray& other) {
  if (this == &other) return *this;
  if (!other.memory_) {
    reset();
    return *this;
  }
  if (memory_ != other.memory_) reset();
  resize(*other.memory_, other.bytes_);
  if (bytes_) memory_->copy(data_, other.data_, bytes_);
  return *this;
}

DeviceArray::DeviceArray(DeviceArray&& other) noexcept
    : memory_(other.memory_), data_(other.data_), bytes_(other.bytes_), capacity_(other.capacity_) {
  other.memory_ = nullptr, other.data_ = nullptr, other.bytes_ = other.capacity_ = 0;
}

DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  if (this == &other) return *this;
  reset();
  memory_ = other.memory_, data_ = other.data_, bytes_ = other.bytes_, capacity_ = other.capacity_;
  other.memory_ = nullptr, other.data_ = nullptr, other.bytes_ = other.capacity_ = 0;
  return *this;
}

void DeviceArray::resize(DeviceMemory& memory, size_t bytes) {
  if (memory_ && memory_ != &memory) reset();
  memory_ = &memory;
  if (bytes > capacity_) {
    void* fresh = bytes ? memory.allocate(bytes) : nullptr;
    if (data_) memory.release(data_, capacity_);
    data_ = fresh;
    capacity_ = bytes;
  }
  bytes_ = bytes;
}

void DeviceArray::reset() {
  if (memory_ && data_) memory_->release(data_, capacity_);
  memory_ = nullptr, data_ = nullptr, bytes_ = capacity_ = 0;
}

void Tensor::fill(float v) { std::fill(data.begin(), data.end(), v); }

Tensor Tensor::reshaped(Shape s) const {
  TRAINRR_CHECK(shape_size(s) == size(), shape_str(shape) + " -> " + shape_str(s));
  return Tensor(std::move(s), data);
}

}  // namespace trainrr
