#pragma once
// Where a run's ops execute: runtime.device = "cpu" (the default), "cuda" (the first GPU) or "cuda:N".
// The engine itself knows only the name; whether a GPU is there, and what it is, is asked of the CUDA
// backend (cuda/), which a build links in when nvcc was found, through set_cuda_probe.

#include <memory>
#include <string>
#include <string_view>

#include "engine/result.h"

namespace trainrr {

struct DeviceSpec {
  enum class Kind { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;  // cuda:N
  bool is_cpu() const { return kind == Kind::cpu; }
  std::string str() const;  // "cpu", "cuda:0"
};

// "cpu", "cuda", "cuda:N" (N a device number, 0 or more). The error says what is accepted.
Result<DeviceSpec> parse_device(std::string_view text);

// What the CUDA backend found for a device: set when the probe succeeds.
struct GpuFound {
  std::string description;  // "NVIDIA H200 (compute capability 9.0, 132 SMs, 139.8 GiB), driver 13.0"
};

// The CUDA backend's probe of device N: its description, or why it cannot be used here (no driver, no
// device, no such device number), in the CUDA runtime's words.
using CudaProbe = Result<GpuFound> (*)(int index);
void set_cuda_probe(CudaProbe probe);

class DeviceBackend;  // engine/device_backend.h

// The CUDA backend's device N as the engine's DeviceBackend (cuda/engine_device.h), or why it cannot be opened.
using CudaBackendFactory = Result<std::unique_ptr<DeviceBackend>> (*)(int index);
void set_cuda_backend(CudaBackendFactory factory);

// Whether this program has the CUDA backend (a probe was set): what a trace's environment records as
// cuda.backend. It says nothing of the run's numbers, which its device does.
bool cuda_backend_built();

// The backend a run on `device` trains on: null for the CPU.
Result<std::unique_ptr<DeviceBackend>> open_device(const DeviceSpec& device);

// Whether this process can run ops on `device`: always for the CPU; for a GPU, the CUDA backend's probe
// must find it, and this engine must be able to run the run's ops there. The error is for people: what the
// CUDA runtime reported, or what this build lacks (callers name the setting).
Status usable_device(const DeviceSpec& device);

}  // namespace trainrr
