#pragma once
// Float32, contiguous, row-major tensors. Images are NHWC, as in Keras' channels_last. A tensor's values are
// in host memory (`data`) on the CPU; in a run on a device (engine/device_backend.h) the engine's tensors keep
// them in device memory (`device`), and `data` is a host copy made when something on the host reads them
// (probes, step summaries, checkpoints).

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace trainrr {

using Shape = std::vector<int64_t>;

int64_t shape_size(const Shape& shape);
// shape_size(shape) for a tensor about to be allocated: std::bad_alloc when its values would take more bytes
// than this machine's memory has (no allocator can give them), which a sanitizer's allocator, asked for
// them, would abort on instead of throwing.
int64_t allocation_size(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(32, 8, 8, 1)"

// Memory on a device: what a DeviceArray allocates from (the device backends implement it).
class DeviceMemory {
 public:
  // Never null for bytes > 0; throws DeviceError (engine/device_backend.h) when the device has no room.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p, size_t bytes) = 0;
  // Device to device, in the order of the device's queued work.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;

 protected:
  ~DeviceMemory() = default;
};

// An array in device memory. Copies are deep (a device-to-device copy on the same device); a resize keeps the
// allocation while it is large enough, as the layers reuse their outputs from step to step.
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray& other);
  DeviceArray& operator=(const DeviceArray& other);
  DeviceArray(DeviceArray&& other) noexcept;
  DeviceArray& operator=(DeviceArray&& other) noexcept;
  ~DeviceArray() { reset(); }

  // `bytes` of device memory from `memory`; the values are unspecified.
  void resize(DeviceMemory& memory, size_t bytes);
  void reset();
  void* get() const { return data_; }
  size_t bytes() const { return bytes_; }
  DeviceMemory* memory() const { return memory_; }
  explicit operator bool() const { return memory_ != nullptr; }

 private:
  DeviceMemory* memory_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;     // in use
  size_t capacity_ = 0;  // allocated
};

struct Tensor {
  Shape shape;
  std::vector<float> data;  // shape_size(shape) values (on a device: the host copy, when one was made)
  DeviceArray device;       // on a device: shape_size(shape) values; empty on the CPU

  Tensor() = default;
  explicit Tensor(Shape s, float fill = 0.0f) : shape(std::move(s)), data(allocation_size(shape), fill) {}
  Tensor(Shape s, std::vector<float> values);

  int64_t size() const {
    return static_cast<int64_t>(device ? device.bytes() / sizeof(float) : data.size());
  }
  bool on_device() const { return static_cast<bool>(device); }
  // The values in device memory (on_device() only).
  float* dptr() { return static_cast<float*>(device.get()); }
  const float* dptr() const { return static_cast<const float*>(device.get()); }
  int rank() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  float& operator[](int64_t i) { return data[i]; }
  float operator[](int64_t i) const { return data[i]; }
  void fill(float v);
  // Same values, another shape of the same size.
  Tensor reshaped(Shape s) const;
};

}  // namespace trainrr
