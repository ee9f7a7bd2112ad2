#include "engine/device.h"

#include <charconv>

#include "engine/device_backend.h"

namespace trainrr {
namespace {
CudaProbe g_cuda_probe = nullptr;
CudaBackendFactory g_cuda_backend = nullptr;
}  // namespace

std::string DeviceSpec::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Result<DeviceSpec> parse_device(std::string_view text) {
  DeviceSpec d;
  if (text == "cpu") return d;
  if (text == "cuda") return DeviceSpec{DeviceSpec::Kind::cuda, 0};
  if (text.substr(0, 5) == "cuda:" && text.size() > 5) {
    const std::string_view n = text.substr(5);
    int index = -1;
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), index);
    if (ec == std::errc() && end == n.data() + n.size() && index >= 0 && n[0] != '+')
      return DeviceSpec{DeviceSpec::Kind::cuda, index};
  }
  return Error{"unknown device \"" + std::string(text) + "\": expected cpu, cuda or cuda:N (N = 0, 1, ...)"};
}

void set_cuda_probe(CudaProbe probe) { g_cuda_probe = probe; }

bool cuda_backend_built() { return g_cuda_probe != nullptr; }

Status usable_device(const DeviceSpec& device) {
  if (device.is_cpu()) return {};
  if (!g_cuda_probe)
    return Error{"this trainrr was built without the CUDA backend (nvcc was not found when it was "
                         "configured; configure with -DTRAINRR_CUDA=ON to require it)"};
  auto found = g_cuda_probe(device.index);
  if (!found) return found.error();
  if (!g_cuda_backend)
    return Error{"found " + found->description + ", but this program was built without the engine's CUDA device"};
  return {};
}

void set_cuda_backend(CudaBackendFactory factory) { g_cuda_backend = factory; }

Result<std::unique_ptr<DeviceBackend>> open_device(const DeviceSpec& device) {
  if (device.is_cpu()) return std::unique_ptr<DeviceBackend>();
  if (Status s = usable_device(device); !s) return s.error();
  return g_cuda_backend(device.index);
}

}  // namespace trainrr
