#include "engine/device_backend.h"

#include "engine/runtime.h"

namespace trainrr {

void device_reshape(DeviceBackend& d, Tensor& t, Shape shape) {
  const size_t bytes = static_cast<size_t>(shape_size(shape)) * sizeof(float);
  t.shape = std::move(shape);
  t.device.resize(d, bytes);
}

void device_copy(DeviceBackend& d, Tensor& dst, const Tensor& src) {
  TRAINRR_CHECK(src.on_device(), "device_copy of a tensor of shape " + shape_str(src.shape) + " not on the device");
  device_reshape(d, dst, src.shape);
  if (src.device.bytes()) d.copy(dst.device.get(), src.device.get(), src.device.bytes());
}

void to_device(DeviceBackend& d, Tensor& t) {
  const size_t bytes = t.data.size() * sizeof(float);
  t.device.resize(d, bytes);
  if (bytes) d.upload(t.device.get(), t.data.data(), bytes);
}

void to_host(DeviceBackend& d, Tensor& t) {
  TRAINRR_CHECK(t.on_device(), "to_host of a tensor of shape " + shape_str(t.shape) + " not on the device");
  t.data.resize(t.device.bytes() / sizeof(float));
  if (!t.data.empty()) d.download(t.data.data(), t.device.get(), t.device.bytes());
}

void download_into(DeviceBackend& d, const Tensor& t, Tensor& host) {
  TRAINRR_CHECK(t.on_device(), "download of a tensor of shape " + shape_str(t.shape) + " not on the device");
  host.device.reset();
  host.shape = t.shape;
  host.data.resize(t.device.bytes() / sizeof(float));
  if (!host.data.empty()) d.download(host.data.data(), t.device.get(), t.device.bytes());
}

void Runtime::stage(const Tensor& t) {
  TRAINRR_CHECK(device != nullptr, "a tensor on a device in a run on the CPU");
  download_into(*device, t, staging_);
}

}  // namespace trainrr
